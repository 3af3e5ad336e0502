"""Rendering of acknowledgments, refusals, referente notices and resolutions.

Every rendered message is parsed back with the stdlib, so the assertions are
about what a mail client or MTA would actually see.
"""

from __future__ import annotations

import dataclasses
import email
import shutil
import unicodedata
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.errors import TemplateError
from maild.records import (
    Address,
    Category,
    Decision,
    Disposition,
    OutgoingMail,
    ParsedMessage,
    RefusalCause,
    TakeIn,
    UnsentReply,
)
from maild.responder import (
    SUBJECT_LIMIT,
    TEMPLATE_NAMES,
    Responder,
    clean_line,
    find_ticket_refs,
    format_when,
    make_message_id,
    refusal_words,
    replies_for,
    reply_subject,
    ticket_tag,
    writable,
)
from maild.rules.screening import load_screening
from maild.settings import DEFAULT_TEMPLATES, Helpdesk
from tests.factories import settings as factory_settings

ROME = ZoneInfo("Europe/Rome")
HELPDESK = Helpdesk(
    address="helpdesk-posta@servizi.example.it",
    name="Help Desk Posta Elettronica",
    trusted_authserv_ids=("mx.servizi.example.it",),
)
REF = "HD-2027-000123"
TAG = "[HD-2027-000123]"
NOW = datetime(2026, 10, 31, 15, 0, 5, tzinfo=UTC)
OUR_ID = "<ack.HD-2027-000123@servizi.example.it>"
REFERENTE = "referente.tecnico@ateneo.example.it"
AUTHORIZED = (REFERENTE, "delegato.sistemi@ateneo.example.it", "vice.referente@ateneo.example.it")
REPLY_HEADERS = {
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
    "X-Auto-Response-Suppress", "Content-Language", "MIME-Version", "Content-Type",
    "Content-Transfer-Encoding",
}
NOTICE_HEADERS = REPLY_HEADERS - {"In-Reply-To", "References"}


def make_message(**changes: object) -> ParsedMessage:
    base = ParsedMessage(
        message_id="<CAB1234@mail.comune.example.it>",
        from_addresses=(Address("Mario Rossi", "mario.rossi@comune.example.it"),),
        from_ambiguous=False,
        reply_to=(Address("", "altro@elsewhere.example.com"),),
        sender=(),
        to=(Address("", HELPDESK.address),),
        cc=(),
        subject="Reset password",
        date=None,
        received_at=None,
        auth_results=(),
        return_path="mario.rossi@comune.example.it",
        auto_submitted=None,
        precedence=None,
        x_autoreply=False,
        content_type="text/plain",
        report_type=None,
        in_reply_to=(),
        references=("<root@comune.example.it>",),
        language_hints=(),
        body_text="Buongiorno, ho dimenticato la password.",
        body_from_html=False,
        attachments=(),
        defects=(),
        size=1000,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def make_disposition(
    *,
    message: ParsedMessage | None = None,
    category: Category = Category.PASSWORD_RESET,
    decision: Decision = Decision.ACCEPTED,
    language: str = "it",
    take_in: TakeIn | None = None,
    reasons: tuple[str, ...] = (),
    refusal: RefusalCause | None = None,
) -> Disposition:
    return Disposition(
        message=message if message is not None else make_message(),
        category=category,
        decision=decision,
        administration="Ateneo",
        priority=2,
        language=language,
        received_at=datetime(2026, 10, 31, 15, 0, tzinfo=UTC),
        take_in=take_in if take_in is not None else TakeIn(datetime(2026, 11, 2, 8, 0, tzinfo=ROME), False),
        reasons=reasons,
        refusal=refusal,
    )


def refused(language: str = "it", message: ParsedMessage | None = None) -> Disposition:
    return make_disposition(
        message=message, decision=Decision.REJECTED, language=language,
        reasons=("from address not authorized", "dmarc=fail at mx.servizi.example.it"),
        refusal=RefusalCause.DMARC_FAILED,
    )


@pytest.fixture(scope="module")
def responder() -> Responder:
    return Responder(DEFAULT_TEMPLATES, HELPDESK)


def flat(text: str) -> str:
    """``text`` with its line breaks and runs of spaces as single spaces: sentences to compare."""
    return " ".join(text.split())


def parse(out: OutgoingMail) -> EmailMessage:
    msg = email.message_from_bytes(out.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body(out: OutgoingMail) -> str:
    """The decoded text body, with the wire's CRLF line ends read as LF."""
    text = parse(out).get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


# --------------------------------------------------------------------------
# Headers


def test_ack_headers_follow_rfc3834_and_thread_the_original(responder: Responder) -> None:
    out = responder.acknowledgment(make_disposition(), REF, OUR_ID, NOW)
    msg = parse(out)

    assert out.kind == "ack"
    assert out.envelope_from == ""
    assert out.message_id == OUR_ID
    assert set(msg.keys()) == REPLY_HEADERS
    sender = msg["From"].addresses
    assert len(sender) == 1
    assert (sender[0].display_name, sender[0].addr_spec) == (HELPDESK.name, HELPDESK.address)
    assert msg["Message-ID"] == OUR_ID
    assert msg["In-Reply-To"] == "<CAB1234@mail.comune.example.it>"
    assert msg["References"] == "<root@comune.example.it> <CAB1234@mail.comune.example.it>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert "Precedence" not in msg
    assert msg["Date"].datetime == NOW
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["Content-Language"] == "it"


def test_replies_go_to_the_from_address_never_reply_to(responder: Responder) -> None:
    d = refused()
    for out in (responder.acknowledgment(d, REF, OUR_ID, NOW),
                responder.refusal(d, REF, OUR_ID, NOW, AUTHORIZED)):
        msg = parse(out)
        assert out.recipients == ("mario.rossi@comune.example.it",)
        assert [a.addr_spec for a in msg["To"].addresses] == ["mario.rossi@comune.example.it"]
        assert b"altro@elsewhere.example.com" not in out.data
        assert "Cc" not in msg
        assert "Bcc" not in msg


def test_every_line_ends_with_crlf_and_is_seven_bit(responder: Responder) -> None:
    out = responder.acknowledgment(make_disposition(), REF, OUR_ID, NOW)
    assert out.data.endswith(b"\r\n")
    assert out.data.count(b"\n") == out.data.count(b"\r\n")
    assert out.data.count(b"\r") == out.data.count(b"\r\n")
    assert max(out.data) < 128
    assert all(len(line) <= 998 for line in out.data.split(b"\r\n"))


def test_rendering_is_deterministic(responder: Responder) -> None:
    d = make_disposition()
    first = responder.acknowledgment(d, REF, OUR_ID, NOW)
    assert responder.acknowledgment(d, REF, OUR_ID, NOW) == first


def test_references_keep_the_root_and_the_last_ids(responder: Responder) -> None:
    refs = tuple(f"<r{i}@example.it>" for i in range(15))
    out = responder.resolution(
        ticket_ref=REF, requester=Address("", "mario.rossi@comune.example.it"), subject="Reset",
        language="it", category=Category.PASSWORD_RESET, note=None, in_reply_to="<parent@example.it>",
        references=refs, message_id=OUR_ID, now=NOW,
    )
    ids = parse(out)["References"].split()
    assert len(ids) == 10
    assert ids[0] == "<r0@example.it>"
    assert ids[-1] == "<parent@example.it>"
    assert ids[1:-1] == list(refs[-8:])


def test_hostile_message_ids_are_dropped_and_long_ones_kept_verbatim(responder: Responder) -> None:
    outlook_id = "<AM0PR01MB1234567890ABCDEF1234567890ABCDEF@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>"
    message = make_message(
        message_id=outlook_id,
        references=("<ok@example.it>", "<a>\r\nBcc: victim@example.org", "no brackets here", "<x y@z>"),
    )
    out = responder.acknowledgment(make_disposition(message=message), REF, OUR_ID, NOW)
    msg = parse(out)
    assert set(msg.keys()) == REPLY_HEADERS
    assert msg["In-Reply-To"] == outlook_id
    assert msg["References"].split() == ["<ok@example.it>", outlook_id]
    assert b"=?" not in header_block(out.data).split(b"\r\nIn-Reply-To:", 1)[1].split(b"\r\nAuto-", 1)[0]


def test_missing_message_id_gives_no_in_reply_to(responder: Responder) -> None:
    message = make_message(message_id="", references=())
    msg = parse(responder.acknowledgment(make_disposition(message=message), REF, OUR_ID, NOW))
    assert "In-Reply-To" not in msg
    assert "References" not in msg


# --------------------------------------------------------------------------
# Subjects


@pytest.mark.parametrize(("original", "expected"), [
    ("Reset password", "Re: Reset password [HD-2027-000123]"),
    ("Re: Reset password", "Re: Reset password [HD-2027-000123]"),
    ("RE: R: re: Reset password", "Re: Reset password [HD-2027-000123]"),
    ("Rif: Reset password", "Re: Reset password [HD-2027-000123]"),
    ("Re: Reset password [HD-2027-000123]", "Re: Reset password [HD-2027-000123]"),
    ("[HD-2027-000123] Reset password", "Re: [HD-2027-000123] Reset password"),
    ("Reset [hd-2027-000123]", "Re: Reset [hd-2027-000123]"),
    ("Re: altro [HD-2027-000999]", "Re: altro [HD-2027-000999] [HD-2027-000123]"),
    ("", "Re: [HD-2027-000123]"),
    ("Recupero password", "Re: Recupero password [HD-2027-000123]"),
])
def test_reply_subject(original: str, expected: str) -> None:
    assert reply_subject(original, REF) == expected


def test_subject_in_the_rendered_message(responder: Responder) -> None:
    message = make_message(subject="Re: Re: Password scaduta")
    msg = parse(responder.acknowledgment(make_disposition(message=message), REF, OUR_ID, NOW))
    assert msg["Subject"] == "Re: Password scaduta [HD-2027-000123]"


HOSTILE_SUBJECTS = {
    "crlf-bcc": "Reset\r\nBcc: victim@example.org\r\nX-Evil: 1",
    "lf-only": "Reset\nBcc: victim@example.org",
    "cr-only": "Reset\rTo: victim@example.org",
    "ten-kb": "A" * 10_240,
    "ten-kb-words": "parola " * 1500,
    "rfc2047-crlf": "=?utf-8?q?Reset=0D=0ABcc:_victim@example.org?=",
    "rfc2047-garbage": "=?utf-8?b?!!!notbase64?= =?x-unknown?q?abc?= =?utf-8?q?=FF=FE?=",
    "nul": "Reset\x00Bcc: victim@example.org",
    "bidi": "Reset \u202egnp.exe\u202c \u2066x\u2069 \u200b\ufeff",
    "unicode-separators": "Reset\u2028Bcc: a@b\u2029\x85Cc: c@d",
    "surrogate": "Reset \udcff password",
    "non-ascii": "Richiesta di aggiornamento è urgente — perché sì " * 10,
}


@pytest.mark.parametrize("subject", HOSTILE_SUBJECTS.values(), ids=HOSTILE_SUBJECTS.keys())
def test_hostile_subjects_cannot_inject_headers(responder: Responder, subject: str) -> None:
    message = make_message(subject=subject)
    for out in (responder.acknowledgment(make_disposition(message=message), REF, OUR_ID, NOW),
                responder.refusal(refused(message=message), REF, OUR_ID, NOW, AUTHORIZED)):
        msg = parse(out)
        assert set(msg.keys()) == REPLY_HEADERS
        assert len(msg.get_all("To") or []) == 1
        assert out.recipients == ("mario.rossi@comune.example.it",)
        assert_clean_subject(msg["Subject"])
        for line in header_block(out.data).split(b"\r\n"):
            assert line[:1] in (b" ", b"\t") or line.split(b":", 1)[0].decode() in REPLY_HEADERS


def assert_clean_subject(subject: str) -> None:
    assert subject.startswith("Re: ")
    assert subject.endswith(TAG)
    assert len(subject) <= len("Re: ") + SUBJECT_LIMIT + 1 + len(TAG)
    assert "\n" not in subject
    assert "\r" not in subject
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in subject)


def test_ten_kb_subject_is_capped(responder: Responder) -> None:
    message = make_message(subject="A" * 10_240)
    msg = parse(responder.acknowledgment(make_disposition(message=message), REF, OUR_ID, NOW))
    assert msg["Subject"] == "Re: " + "A" * (SUBJECT_LIMIT - 1) + "… " + TAG


def test_encoded_word_garbage_stays_literal_text(responder: Responder) -> None:
    message = make_message(subject="=?utf-8?q?Reset=0D=0ABcc:_victim@example.org?=")
    msg = parse(responder.acknowledgment(make_disposition(message=message), REF, OUR_ID, NOW))
    assert "Bcc" not in msg
    assert msg["Subject"] == "Re: = ?utf-8?q?Reset=0D=0ABcc:_victim@example.org?= " + TAG


@settings(deadline=None, max_examples=200)
@given(subject=st.text())
def test_any_subject_round_trips_as_one_clean_header(responder: Responder, subject: str) -> None:
    out = responder.acknowledgment(make_disposition(message=make_message(subject=subject)), REF, OUR_ID, NOW)
    msg = parse(out)
    assert set(msg.keys()) == REPLY_HEADERS
    assert msg["Subject"] == reply_subject(subject, REF)
    assert_clean_subject(msg["Subject"])


def test_clean_line_strips_controls_and_bidi() -> None:
    assert clean_line("Mario\x00 \u202eRossi\u202c\r\n\tjr", 80) == "Mario Rossi jr"
    assert clean_line("x" * 100, 10) == "x" * 9 + "…"


def clean_line_by_category(value: str, limit: int) -> str:
    """``clean_line`` spelled out character by character from the Unicode categories."""
    kept = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in value if unicodedata.category(ch) not in ("Cf", "Cs")
    )
    text = " ".join(kept.split()).replace("=?", "= ?")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@settings(deadline=None, max_examples=300)
@given(value=st.one_of(st.text(st.characters(max_codepoint=0x7F)), st.text()), limit=st.integers(1, 60))
def test_clean_line_matches_the_unicode_categories(value: str, limit: int) -> None:
    assert clean_line(value, limit) == clean_line_by_category(value, limit)


def test_clean_line_turns_every_ascii_control_into_a_space() -> None:
    controls = "".join(map(chr, (*range(0x20), 0x7F)))
    assert clean_line(f"a{controls}b", 80) == "a b"
    printable = "".join(map(chr, range(0x21, 0x7F)))
    assert clean_line(f" {printable} ", 200) == printable.replace("=?", "= ?")


# --------------------------------------------------------------------------
# Acknowledgment content


@pytest.mark.parametrize(("language", "in_hours", "take_in_at", "expected"), [
    ("it", False, datetime(2026, 11, 2, 8, 0, tzinfo=ROME),
     "Il suo messaggio è arrivato fuori dall'orario di servizio. La richiesta sarà presa in carico "
     "lunedì 2 novembre 2026 alle 08:00 (ora italiana), alla riapertura."),
    ("it", True, datetime(2026, 11, 3, 10, 15, tzinfo=ROME),
     "La richiesta è stata presa in carico martedì 3 novembre 2026 alle 10:15 (ora italiana) ed è ora in "
     "lavorazione"),
    ("en", False, datetime(2026, 11, 2, 8, 0, tzinfo=ROME),
     "Your message reached us outside our service hours. We will take it in on Monday 2 November 2026 "
     "at 08:00 (Italian time), when we next open."),
    ("en", True, datetime(2026, 11, 3, 10, 15, tzinfo=ROME),
     "We took it in on Tuesday 3 November 2026 at 10:15 (Italian time), and our staff are now working on it."),
    # Stored in UTC: still shown in the help desk's local time (CEST in July).
    ("it", False, datetime(2026, 7, 15, 6, 0, tzinfo=UTC),
     "presa in carico mercoledì 15 luglio 2026 alle 08:00 (ora italiana), alla riapertura."),
])
def test_ack_take_in_time_in_local_time(
    responder: Responder, language: str, in_hours: bool, take_in_at: datetime, expected: str,
) -> None:
    d = make_disposition(language=language, take_in=TakeIn(take_in_at, in_hours))
    text = body(responder.acknowledgment(d, REF, OUR_ID, NOW))
    assert expected in flat(text)
    assert max(len(line) for line in text.splitlines()) <= 78
    assert REF in text
    assert text.rstrip().endswith("--\n" + ("Messaggio generato automaticamente a conferma della ricezione."
                                           if language == "it" else "This is an automatic acknowledgment "
                                           "of receipt."))
    assert HELPDESK.name in text
    other = "fuori dall'orario" if language == "it" else "outside our service hours"
    assert (other in text) is not in_hours


def test_ack_language_defaults_to_italian(responder: Responder) -> None:
    out = responder.acknowledgment(make_disposition(language="de"), REF, OUR_ID, NOW)
    assert parse(out)["Content-Language"] == "it"
    assert body(out).startswith("Gentile Mario Rossi,\n")


def test_ack_in_english(responder: Responder) -> None:
    out = responder.acknowledgment(make_disposition(language="en"), REF, OUR_ID, NOW)
    assert parse(out)["Content-Language"] == "en"
    assert body(out).startswith("Dear Mario Rossi,\n")


@pytest.mark.parametrize(("category", "italian", "english"), [
    (Category.ANAGRAFICA, "aggiornamento di dati anagrafici, di casella o di lista",
     "update of directory, mailbox or mailing list details"),
    (Category.PASSWORD_RESET, "reimpostazione o sblocco della password", "password reset or unlock"),
    (Category.LIFECYCLE, "creazione, cancellazione o blocco di caselle o liste",
     "creation, deletion or blocking of a mailbox or list"),
    (Category.OTHER, "richiesta di informazioni o assistenza", "information or general assistance"),
])
def test_ack_names_the_category_in_words(
    responder: Responder, category: Category, italian: str, english: str,
) -> None:
    it = body(responder.acknowledgment(make_disposition(category=category), REF, OUR_ID, NOW))
    en = body(responder.acknowledgment(make_disposition(category=category, language="en"), REF, OUR_ID, NOW))
    assert f"Tipo di richiesta: {italian}." in it
    assert f"Type of request: {english}." in en


def test_display_name_is_cleaned_and_not_html_escaped(responder: Responder) -> None:
    message = make_message(from_addresses=(Address("D'Amico\r\nAnna\u202e", "m@comune.example.it"),))
    text = body(responder.acknowledgment(make_disposition(message=message), REF, OUR_ID, NOW))
    assert text.startswith("Gentile D'Amico Anna,\n")


@pytest.mark.parametrize(("display", "italian", "english"), [
    ("Guidi Alberto - Referente Tecnico", "Gentile Guidi Alberto,", "Dear Guidi Alberto,"),
    ("Tom Baker", "Gentile Tom Baker,", "Dear Tom Baker,"),
    ("Dott.ssa Anna Verdi", "Gentile Anna Verdi,", "Dear Anna Verdi,"),
    ("VERDI, ANNA", "Gentile Anna Verdi,", "Dear Anna Verdi,"),
    ("Anna Verdi (Ateneo)", "Gentile Anna Verdi,", "Dear Anna Verdi,"),
    ("Guidi Alberto | Servizi Informatici", "Gentile Guidi Alberto,", "Dear Guidi Alberto,"),
    # Not a person's name: an address, a role, an office, a username, nothing.
    ("mario.rossi@comune.example.it", "Gentile utente,", "Hello,"),
    ("Referente Tecnico", "Gentile utente,", "Hello,"),
    ("Ufficio Protocollo - Ateneo", "Gentile utente,", "Hello,"),
    ("m.rossi", "Gentile utente,", "Hello,"),
    ("Rossi & Figli <Srl>", "Gentile utente,", "Hello,"),
    ("", "Gentile utente,", "Hello,"),
])
def test_greeting_uses_the_person_s_name_or_none(
    responder: Responder, display: str, italian: str, english: str,
) -> None:
    message = make_message(from_addresses=(Address(display, "m@comune.example.it"),))
    it = body(responder.acknowledgment(make_disposition(message=message), REF, OUR_ID, NOW))
    en = body(responder.acknowledgment(make_disposition(message=message, language="en"), REF, OUR_ID, NOW))
    assert it.startswith(f"{italian}\n\nla ringraziamo per averci scritto. ")
    assert en.startswith(f"{english}\n\nThank you for writing to us. ")


def test_ack_without_display_name_greets_the_user(responder: Responder) -> None:
    message = make_message(from_addresses=(Address("", "m@comune.example.it"),))
    assert body(responder.acknowledgment(make_disposition(message=message), REF, OUR_ID, NOW)).startswith(
        "Gentile utente,\n")


def test_ack_needs_a_take_in_time(responder: Responder) -> None:
    d = dataclasses.replace(make_disposition(), take_in=None)
    with pytest.raises(TemplateError, match="take-in"):
        responder.acknowledgment(d, REF, OUR_ID, NOW)


def test_reply_needs_a_from_address(responder: Responder) -> None:
    d = make_disposition(message=make_message(from_addresses=()))
    with pytest.raises(TemplateError, match="no From"):
        responder.acknowledgment(d, REF, OUR_ID, NOW)


@pytest.mark.parametrize("addr", ["x@y\r\nRCPT TO:<victim@example.org>", "a b@example.it", "è@example.it", ""])
def test_unusable_recipient_is_a_template_error(responder: Responder, addr: str) -> None:
    d = make_disposition(message=make_message(from_addresses=(Address("", addr),)))
    with pytest.raises(TemplateError):
        responder.acknowledgment(d, REF, OUR_ID, NOW)


# --------------------------------------------------------------------------
# Refusal


@pytest.mark.parametrize("language", ["it", "en"])
def test_refusal_explains_how_to_proceed_without_secrets(responder: Responder, language: str) -> None:
    out = responder.refusal(refused(language), REF, OUR_ID, NOW, AUTHORIZED)
    text = body(out)
    msg = parse(out)
    assert out.kind == "refusal"
    assert out.envelope_from == ""
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Subject"] == "Re: Reset password " + TAG
    assert REF in text
    assert "referente tecnico" in text
    for address in AUTHORIZED:
        assert address not in out.data.decode("ascii")
    assert "ateneo.example.it" not in text
    for secret in ("dmarc", "dkim", "spf", "Authentication-Results", "mx.servizi", "not authorized"):
        assert secret.lower() not in text.lower()
    if language == "it":
        assert "La richiesta non è stata eseguita" in text
        assert "rivolgersi al referente tecnico della sua Amministrazione" in text
        assert "reimpostazione o sblocco delle password" in text
        assert "cancellazione o\nblocco di caselle di posta e di liste di distribuzione" in text
    else:
        assert text.startswith("Hello,\n\nWe have received your message")
        assert "We have not carried out the request" in text
        assert "please ask the\nreferente tecnico of your Administration" in text
        assert "create, delete or block mailboxes" in text


def test_refusal_to_an_authorized_address_still_hides_the_list(responder: Responder) -> None:
    message = make_message(from_addresses=(Address("Referente", REFERENTE),))
    out = responder.refusal(refused(message=message), REF, OUR_ID, NOW, AUTHORIZED)
    assert out.recipients == (REFERENTE,)
    text = body(out)
    assert not any(a in text for a in AUTHORIZED)


def copy_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, target)
    return target


def test_refusal_template_leaking_an_authorized_address_is_refused(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "refusal.it.txt.j2").write_text("Scriva a Referente.Tecnico@ateneo.example.it\n", encoding="utf-8")
    responder = Responder(folder, HELPDESK)
    with pytest.raises(TemplateError, match="disclose"):
        responder.refusal(refused(), REF, OUR_ID, NOW, AUTHORIZED)


# --------------------------------------------------------------------------
# Referente notice


def test_referente_notice_tells_who_what_when_why(responder: Responder) -> None:
    message = make_message(
        from_addresses=(Address("Referente \u202eTecnico\r\nBcc: x", "Referente.Tecnico@Ateneo.example.it"),),
        subject="Urgente: reset password di mario.rossi",
    )
    d = dataclasses.replace(refused(message=message), language="en")
    out = responder.referente_notice(d, REF, "<notice.1@servizi.example.it>", NOW, REFERENTE)
    msg = parse(out)
    text = body(out)

    assert out.kind == "referente_notice"
    assert out.recipients == (REFERENTE,)
    assert out.envelope_from == ""
    assert set(msg.keys()) == NOTICE_HEADERS
    assert [a.addr_spec for a in msg["To"].addresses] == [REFERENTE]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"] == "<notice.1@servizi.example.it>"
    assert msg["Subject"] == f"Richiesta privilegiata respinta: reimpostazione o sblocco della password {TAG}"
    assert msg["Content-Language"] == "it"  # the referente reads Italian, whatever the sender wrote
    assert text.startswith("Gentile referente tecnico,\n\nabbiamo respinto una richiesta di reimpostazione")
    assert ("abbiamo respinto una richiesta di reimpostazione o sblocco della password che "
            "Referente.Tecnico@Ateneo.example.it ha inviato a nome dell'Amministrazione Ateneo, perché il "
            "messaggio non ha superato i controlli sul mittente del nostro server di ricezione (DMARC non "
            "superato).") in flat(text)
    assert '"Referente Tecnico Bcc: x" <Referente.Tecnico@Ateneo.example.it>' in text
    assert "Reply-To:    <altro@elsewhere.example.com>" in text
    assert "Oggetto:     Urgente: reset password di mario.rossi" in text
    assert "Ricevuto:    sabato 31 ottobre 2026 alle 16:00 (ora italiana)" in text
    assert "Message-ID:  <CAB1234@mail.comune.example.it>" in text
    assert f"Pratica:     {REF}" in text
    assert "Nessuna operazione è stata eseguita." in text
    # The technical trace stays with the ticket.
    for trace in ("from address not authorized", "dmarc=fail", "mx.servizi.example.it"):
        assert trace not in text
    assert max(len(line) for line in text.splitlines() if not line.startswith("  ")) <= 78


def test_referente_notice_in_english(responder: Responder) -> None:
    out = responder.referente_notice(refused(), REF, OUR_ID, NOW, REFERENTE, language="en")
    text = body(out)
    assert parse(out)["Subject"] == f"Privileged request refused: password reset or unlock {TAG}"
    assert text.startswith("Dear referente tecnico,\n\nWe refused a request for password reset or unlock that\n")
    assert ("We refused a request for password reset or unlock that mario.rossi@comune.example.it sent in the "
            "name of Ateneo, because the message did not pass the sender checks of our receiving server "
            "(DMARC failed).") in flat(text)
    assert "No action was taken." in text
    assert "Received:    Saturday 31 October 2026 at 16:00 (Italian time)" in text
    assert "From:        \"Mario Rossi\" <mario.rossi@comune.example.it>" in text
    assert "dmarc=fail" not in text


@pytest.mark.parametrize(("cause", "italian", "english"), [
    (RefusalCause.NOT_AUTHORIZED_SENDER, "perché il mittente non è il referente tecnico né un suo delegato.",
     "because the sender is neither the referente tecnico nor one of their delegates."),
    (RefusalCause.NOT_CHECKED, "perché il nostro server di ricezione non ha potuto verificare il mittente.",
     "because our receiving server could not check the sender."),
    (RefusalCause.PEC_SIGNATURE, "perché non è stato possibile verificare la firma del gestore PEC.",
     "because the PEC provider's signature could not be verified."),
    (RefusalCause.USERS_ROLE, "perché è stata fatta con il PIN degli utenti, che non consente questo tipo di "
     "richiesta.", "because it was made with the users' PIN, which does not allow this kind of request."),
])
def test_referente_notice_says_why_in_one_sentence(
    responder: Responder, cause: RefusalCause, italian: str, english: str,
) -> None:
    d = dataclasses.replace(refused(), refusal=cause)
    it = flat(body(responder.referente_notice(d, REF, OUR_ID, NOW, REFERENTE)))
    en = flat(body(responder.referente_notice(d, REF, OUR_ID, NOW, REFERENTE, language="en")))
    assert f"a nome dell'Amministrazione Ateneo, {italian} Nessuna operazione" in it
    assert f"in the name of Ateneo, {english} No action was taken." in en


def test_every_refusal_cause_has_words_in_both_languages() -> None:
    for cause in RefusalCause:
        assert refusal_words(cause, "it") != refusal_words(cause, "en")
        assert refusal_words(cause, "en")[0].islower()


def test_referente_notice_subject_ignores_the_sender_subject(responder: Responder) -> None:
    message = make_message(subject="Bcc: victim@example.org\r\nX: 1")
    msg = parse(responder.referente_notice(refused(message=message), REF, OUR_ID, NOW, REFERENTE))
    assert set(msg.keys()) == NOTICE_HEADERS
    assert "victim" not in msg["Subject"]


# --------------------------------------------------------------------------
# Resolution


@pytest.mark.parametrize("language", ["it", "en"])
def test_resolution_with_and_without_note(responder: Responder, language: str) -> None:
    requester = Address("Mario Rossi", "mario.rossi@comune.example.it")

    def render(note: str | None) -> OutgoingMail:
        return responder.resolution(
            ticket_ref=REF, requester=requester, subject="Re: Reset password [HD-2027-000123]",
            language=language, category=Category.PASSWORD_RESET, note=note,
            in_reply_to="<CAB1234@mail.comune.example.it>", references=("<root@comune.example.it>",),
            message_id=OUR_ID, now=NOW,
        )

    with_note = render("Password reimpostata.\r\nLa nuova è stata inviata al referente.\x07")
    msg = parse(with_note)
    assert with_note.kind == "resolution"
    assert with_note.recipients == ("mario.rossi@comune.example.it",)
    assert set(msg.keys()) == REPLY_HEADERS
    assert msg["Subject"] == "Re: Reset password " + TAG
    assert msg["In-Reply-To"] == "<CAB1234@mail.comune.example.it>"
    assert msg["References"] == "<root@comune.example.it> <CAB1234@mail.comune.example.it>"
    assert "Password reimpostata.\nLa nuova è stata inviata al referente.\n" in body(with_note)
    label = "Nota dell'operatore:" if language == "it" else "Note from our staff:"
    assert label in body(with_note)
    assert label not in body(render(None))
    assert label not in body(render("  \n "))
    assert ("è stata risolta" if language == "it" else "has been resolved") in body(render(None))


# --------------------------------------------------------------------------
# Template loading and errors


def test_all_templates_exist() -> None:
    for name in TEMPLATE_NAMES:
        assert (DEFAULT_TEMPLATES / name).is_file(), name


def test_strict_undefined_surfaces_as_template_error(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "ack.it.txt.j2").write_text("Gentile {{ no_such_variable }},\n", encoding="utf-8")
    responder = Responder(folder, HELPDESK)
    with pytest.raises(TemplateError, match="no_such_variable"):
        responder.acknowledgment(make_disposition(), REF, OUR_ID, NOW)


def test_templates_see_the_jinja_globals(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "ack.it.txt.j2").write_text(
        "{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}"
        "{{ ns.n }} {{ dict(a=1) }} {{ ticket_ref }}\n", encoding="utf-8")
    responder = Responder(folder, HELPDESK)
    assert body(responder.acknowledgment(make_disposition(), REF, OUR_ID, NOW)) == f"6 {{'a': 1}} {REF}\n"


def test_missing_folder_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        Responder(tmp_path / "nope", HELPDESK)


def test_missing_template_fails_at_construction(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "refusal.en.txt.j2").unlink()
    with pytest.raises(TemplateError, match=r"refusal\.en\.txt\.j2"):
        Responder(folder, HELPDESK)


def test_syntax_error_fails_at_construction(tmp_path: Path) -> None:
    folder = copy_templates(tmp_path)
    (folder / "resolution.it.txt.j2").write_text("{% if %}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="line 1"):
        Responder(folder, HELPDESK)


# --------------------------------------------------------------------------
# Ticket tags and Message-IDs


def test_ticket_tag() -> None:
    assert ticket_tag(REF) == TAG


def test_find_ticket_refs_round_trip() -> None:
    subject = reply_subject("Reset password", REF)
    assert find_ticket_refs(subject, "HD") == (REF,)
    assert find_ticket_refs(reply_subject(subject, REF), "HD") == (REF,)


def test_find_ticket_refs_variants() -> None:
    subject = "Re: [hd-2027-000001] x [ HD-2027-000002 ] [HD-2027-000001] [XY-2027-000003] HD-2027-000004"
    assert find_ticket_refs(subject, "HD") == ("HD-2027-000001", "HD-2027-000002")
    assert find_ticket_refs(subject, "XY") == ("XY-2027-000003",)
    assert find_ticket_refs("nothing here", "HD") == ()


def test_make_message_id_is_deterministic() -> None:
    first = make_message_id(HELPDESK.address, "ack.HD-2027-000123")
    assert first == "<ack.HD-2027-000123@servizi.example.it>"
    assert make_message_id(HELPDESK.address, "ack.HD-2027-000123") == first
    assert make_message_id(HELPDESK.address, "refusal.HD-2027-000123") != first
    assert make_message_id("X@Servizi.Example.IT", "outbox-42") == "<outbox-42@servizi.example.it>"


def test_make_message_id_cleans_the_token() -> None:
    assert make_message_id(HELPDESK.address, "a b<c>@d\r\n..e.") == "<a-b-c-d-.e@servizi.example.it>"
    with pytest.raises(TemplateError):
        make_message_id(HELPDESK.address, "...")


def test_message_id_goes_out_unchanged(responder: Responder) -> None:
    mid = make_message_id(HELPDESK.address, "outbox-7")
    out = responder.acknowledgment(make_disposition(), REF, mid, NOW)
    assert out.message_id == mid
    assert parse(out)["Message-ID"] == mid


# --------------------------------------------------------------------------
# Dates


@pytest.mark.parametrize(("moment", "language", "expected"), [
    (datetime(2026, 11, 2, 8, 0, tzinfo=ROME), "it", "lunedì 2 novembre 2026 alle 08:00"),
    (datetime(2026, 11, 2, 8, 0, tzinfo=ROME), "en", "Monday 2 November 2026 at 08:00"),
    (datetime(2027, 1, 1, 0, 30, tzinfo=UTC), "it", "venerdì 1 gennaio 2027 all'01:30"),
    (datetime(2026, 7, 15, 15, 5, tzinfo=UTC), "it", "mercoledì 15 luglio 2026 alle 17:05"),
    (datetime(2026, 7, 15, 15, 5, tzinfo=UTC), "xx", "mercoledì 15 luglio 2026 alle 17:05"),
])
def test_format_when(moment: datetime, language: str, expected: str) -> None:
    assert format_when(moment, language, ROME) == expected


# --------------------------------------------------------------------------
# Recipients maild cannot or must not write to: the reply is a value saying why, never an exception

SCREENING = load_screening()


def _replies(responder: Responder, addr: str, decision: Decision = Decision.ACCEPTED
             ) -> tuple[OutgoingMail | UnsentReply, ...]:
    d = make_disposition(message=make_message(from_addresses=(Address("Mario", addr),) if addr else ()),
                         decision=decision)
    return replies_for(d, REF, "0" * 64, NOW, responder, factory_settings(), SCREENING, followup=False)


@pytest.mark.parametrize(("addr", "why"), [
    ('"System Administrator"@example.com', "quoted local part"),
    ("jdöe@mächine.example", "non-ASCII local part"),
    ("", "no address to answer"),
    ("noreply@ateneo.example.it", "never a person"),
    ("MAILER-DAEMON@ateneo.example.it", "never a person"),
    ("posta-certificata@pec.ateneo.example.it", "never a person"),
])
def test_an_acknowledgment_to_an_address_maild_cannot_or_must_not_write_to_is_unsent_with_the_reason(
        responder: Responder, addr: str, why: str) -> None:
    (reply,) = _replies(responder, addr)
    assert isinstance(reply, UnsentReply)
    assert (reply.kind, reply.recipient) == ("ack", addr)
    assert why in reply.reason
    assert reply.description.startswith("acknowledgment not sendable: ")


def test_a_refusal_to_a_machine_is_unsent_but_the_referente_is_still_told(responder: Responder) -> None:
    refusal, notice = _replies(responder, "no-reply@ateneo.example.it", Decision.REJECTED)
    assert isinstance(refusal, UnsentReply) and refusal.kind == "refusal"
    assert isinstance(notice, OutgoingMail) and notice.recipients == (REFERENTE,)


def test_a_non_ascii_domain_is_answered_in_idna() -> None:
    assert writable("mario@mächine.example") == ("mario@xn--mchine-bua.example", "")
    assert writable('"x"@example.com')[0] is None
