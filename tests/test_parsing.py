"""Behaviour of ``parse_message`` on the corpus, on tricky headers, and on hostile mail.

Hostile shapes run under a hang guard (a thread that must finish within
``HANG_GUARD`` seconds: it catches a hang, it does not measure speed) and the
biggest one under tracemalloc.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.mail import parsing
from maild.mail.parsing import defects, parse_message
from maild.records import ParsedMessage
from maild.rules.screening import HEADER_FIELD, load_screening
from maild.settings import Limits
from tests import hostile

CORPUS = Path(__file__).parent / "data" / "corpus"
LIMITS = Limits()
HANG_GUARD = 20.0
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
SURROGATE = re.compile("[\ud800-\udfff]")


def corpus(name: str) -> ParsedMessage:
    return parse_message((CORPUS / f"{name}.eml").read_bytes(), LIMITS)


def guarded(raw: bytes, limits: Limits = LIMITS) -> ParsedMessage:
    """Parse in a daemon thread so that a hang fails the test instead of the suite."""
    box: list[ParsedMessage] = []
    worker = threading.Thread(target=lambda: box.append(parse_message(raw, limits)), daemon=True)
    worker.start()
    worker.join(HANG_GUARD)
    assert not worker.is_alive(), "parse_message did not return"
    assert box, "parse_message raised"
    return box[0]


def assert_sane(result: ParsedMessage, raw: bytes, limits: Limits = LIMITS) -> None:
    """Storable (no NUL, no surrogates), single-line headers, and within the limits."""
    one_line = [
        result.message_id, result.subject, result.content_type, result.report_type or "",
        result.return_path or "", result.auto_submitted or "", result.precedence or "",
        *result.auth_results, *result.in_reply_to, *result.references, *result.language_hints,
        *result.defects, *result.link_texts,
    ]
    for address in (*result.from_addresses, *result.reply_to, *result.sender, *result.to, *result.cc):
        one_line += [address.name, address.addr]
    for attachment in result.attachments:
        one_line += [attachment.filename, attachment.content_type]
        assert attachment.size >= 0
    for text in one_line:
        assert not CONTROL.search(text), text
    for text in [*one_line, result.body_text]:
        assert "\x00" not in text
        assert not SURROGATE.search(text)
    assert result.message_id.startswith("<") and result.message_id.endswith(">")
    assert result.size == len(raw)
    assert len(result.subject) <= limits.max_header_bytes
    assert len(result.body_text) <= limits.max_body_chars
    assert len(result.attachments) <= limits.max_parts
    assert len(result.link_texts) <= parsing.html.MAX_LINKS
    assert all(0 < len(text) <= parsing.html.MAX_LINK_CHARS for text in result.link_texts)
    assert len(result.defects) <= defects.MAX_DEFECTS + 1
    assert not any(d.startswith("parser-fault") for d in result.defects), result.defects
    for stamp in (result.date, result.received_at):
        assert stamp is None or stamp.utcoffset() is not None


# --------------------------------------------------------------------------
# Corpus


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_every_corpus_message_parses(path: Path) -> None:
    raw = path.read_bytes()
    result = parse_message(raw, LIMITS)
    assert_sane(result, raw)
    assert result.from_addresses
    assert "message-id-missing" not in result.defects
    assert result.date is not None
    assert result.body_text.strip()


def test_quoted_comma_in_display_name_is_one_unambiguous_address() -> None:
    result = corpus("d032")
    assert [(a.name, a.addr) for a in result.from_addresses] == [
        ("Vitali, Chiara", "vice.referente@ateneo.example.it")
    ]
    assert not result.from_ambiguous
    assert result.language_hints == ("en-us", "it-it")
    assert result.received_at == datetime(2027, 4, 19, 12, 2, tzinfo=UTC)
    assert result.message_id == "<0B9151DCF096BE9855D32A9C73679467@EXMBX02.ateneo.example.it>"


def test_two_from_addresses_are_both_kept() -> None:
    result = corpus("d003")
    assert [a.addr for a in result.from_addresses] == [
        "vice.referente@ateneo.example.it", "ornella.lanza@ateneo.example.it",
    ]
    assert [a.addr for a in result.sender] == ["ornella.lanza@ateneo.example.it"]


def test_html_only_body_becomes_readable_text() -> None:
    result = corpus("d004")
    assert result.body_from_html
    assert "Aurora Fiore" in result.body_text
    assert "Laboratorio di Robotica – DEI" in result.body_text
    assert "<" not in result.body_text and "=3D" not in result.body_text


def test_plain_alternative_is_preferred_to_html() -> None:
    result = corpus("d032")
    assert not result.body_from_html
    assert result.body_text.startswith("Hello,\n\nThe password of diego.ramirez")
    assert "MsoNormal" not in result.body_text


def _alternative(plain: str, html: str, *, outer: str = "") -> bytes:
    """A multipart/alternative message, optionally inside a multipart/mixed with a text part ``outer``."""
    alt = (
        'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        f"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{plain}\r\n"
        f"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--alt--\r\n"
    )
    head = "From: a@example.org\r\nSubject: richiesta\r\nMIME-Version: 1.0\r\n"
    if outer:
        return (head + 'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n--mix\r\n' + alt
                + f"--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{outer}\r\n--mix--\r\n").encode()
    return (head + alt).encode()


_REQUEST_HTML = ("<html><body><p>Buongiorno,</p><p>vi chiedo di creare la lista progetto-alfa con me come "
                 "proprietario e i colleghi del laboratorio come iscritti.</p><p>Grazie, Carla</p></body></html>")


@pytest.mark.parametrize("placeholder", [
    "Questo messaggio è in formato HTML. Per visualizzarlo utilizzare un programma che supporti l'HTML.",
    "To view this message, please use an HTML-capable mail client.",
    "",
    "Buongiorno,",
])
def test_text_alternative_poorer_than_html_yields_to_it(placeholder: str) -> None:
    result = parse_message(_alternative(placeholder, _REQUEST_HTML), LIMITS)
    assert result.body_from_html
    assert "creare la lista progetto-alfa" in result.body_text
    assert "formato HTML" not in result.body_text and "HTML-capable" not in result.body_text


def test_faithful_text_alternative_is_kept() -> None:
    plain = ("Buongiorno,\r\n\r\nvi chiedo di creare la lista progetto-alfa con me come proprietario e i "
             "colleghi del laboratorio come iscritti.\r\n\r\nGrazie, Carla")
    result = parse_message(_alternative(plain, _REQUEST_HTML), LIMITS)
    assert not result.body_from_html
    assert result.body_text.startswith("Buongiorno,\n\nvi chiedo")


def test_text_outside_the_alternative_is_kept_when_the_html_wins() -> None:
    raw = _alternative("Messaggio in formato HTML.", _REQUEST_HTML, outer="Allego il modulo firmato.")
    result = parse_message(raw, LIMITS)
    assert result.body_from_html
    assert "creare la lista progetto-alfa" in result.body_text
    assert result.body_text.endswith("Allego il modulo firmato.")


_NEWSLETTER_HTML = (
    "<html><head><style>a.x { color: red }</style></head><body><p>Le novit&agrave; del mese.</p>"
    '<p><a name="top">Inizio</a> <a href="https://news.example.it/n/81"><b>Leggi</b> online</a></p>'
    "<!-- <a href='https://hidden.example.it'>nascosto</a> -->"
    '<p style="font-size:9px"><A HREF="https://news.example.it/u/81">Cancella&nbsp;l&#39;iscrizione</A> |'
    ' <a href="mailto:x@example.it">   </a></p></body></html>'
)


def test_the_texts_of_an_html_body_s_links_are_kept_as_shown() -> None:
    raw = ("From: a@example.org\r\nSubject: Novita\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           + _NEWSLETTER_HTML).encode()
    result = parse_message(raw, LIMITS)
    assert result.body_from_html
    assert result.link_texts == ("Leggi online", "Cancella l'iscrizione")  # no anchor, hidden or empty link


def test_links_are_read_only_from_an_html_body() -> None:
    plain = "Le novità del mese: leggi online https://news.example.it/n/81, cancella l'iscrizione qui."
    assert parse_message(_alternative(plain, _NEWSLETTER_HTML), LIMITS).link_texts == ()  # the text part is read
    poorer = parse_message(_alternative("Messaggio in formato HTML.", _NEWSLETTER_HTML), LIMITS)
    assert poorer.body_from_html and poorer.link_texts == ("Leggi online", "Cancella l'iscrizione")


def test_many_unclosed_and_nested_links_are_read_in_bounded_work() -> None:
    html = "<a href='x'>uno</a>" * 500 + "<a href='y'><a href='z'>due" * 50_000 + "</a>" + "<a href=w>" * 50_000
    raw = ("From: a@example.org\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html).encode()
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.link_texts == ("uno",) * parsing.html.MAX_LINKS


def test_iso_8859_1_encoded_word_subject() -> None:
    assert corpus("d005").subject == "Sospensione urgente casella - attività anomala"


def test_missing_subject_is_empty() -> None:
    assert corpus("d042").subject == ""


def test_windows_1252_quoted_printable_body() -> None:
    body = corpus("d041").body_text
    assert "(“marras noemi”)" in body
    assert "l’indirizzo" in body
    assert "Campus di Forlì – Servizio Didattica" in body


@pytest.mark.parametrize("name", ["d001", "d060"])
def test_empty_return_path_is_empty_string(name: str) -> None:
    result = corpus(name)
    assert result.return_path == ""
    assert result.content_type == "multipart/report"
    assert result.report_type == "delivery-status"


def test_authentication_results_in_order_and_unfolded() -> None:
    results = corpus("d008").auth_results
    assert len(results) == 2
    assert results[0] == (
        "mx.servizi.example.it; dkim=none; spf=softfail smtp.mailfrom=ateneo.example.it; "
        "dmarc=fail (p=quarantine) header.from=ateneo.example.it"
    )
    assert "dmarc=pass" in results[1]


def test_domain_is_lower_cased_and_local_part_kept() -> None:
    (address,) = corpus("d043").from_addresses
    assert address.addr == "DELEGATO.SISTEMI@ateneo.example.it"
    assert address.key == "delegato.sistemi@ateneo.example.it"


def test_loop_headers() -> None:
    assert corpus("d007").precedence == "auto_reply"
    assert corpus("d014").x_autoreply
    assert corpus("d024").auto_submitted == "auto-replied"
    assert corpus("d032").auto_submitted is None
    assert corpus("d032").return_path == "vice.referente@ateneo.example.it"


def test_attachment_name_type_and_size() -> None:
    (attachment,) = corpus("d026").attachments
    assert attachment.filename == "richiesta_attivazione_R_Pace.pdf"
    assert attachment.content_type == "application/pdf"
    assert attachment.size > 0


# --------------------------------------------------------------------------
# Header fields


def test_absent_return_path_is_none_and_bracketed_one_is_unwrapped() -> None:
    assert parse_message(hostile.message(), LIMITS).return_path is None
    raw = hostile.message(headers=(("Return-Path", " <A.B@Example.it> "),))
    assert parse_message(raw, LIMITS).return_path == "A.B@Example.it"


def test_missing_message_id_is_synthesized_stably() -> None:
    raw = hostile.message().replace(b"Message-ID: <hostile-test@ateneo.example.it>\r\n", b"")
    first, second = parse_message(raw, LIMITS), parse_message(raw, LIMITS)
    assert first.message_id == second.message_id
    assert re.fullmatch(r"<[0-9a-f]{64}@maild\.invalid>", first.message_id)
    assert "message-id-missing" in first.defects


def test_message_id_whitespace_is_stripped() -> None:
    raw = hostile.message().replace(
        b"Message-ID: <hostile-test@ateneo.example.it>", b"Message-ID:  \r\n\t<abc.def@x.it>  "
    )
    assert parse_message(raw, LIMITS).message_id == "<abc.def@x.it>"


def test_thread_headers_and_language_hints() -> None:
    raw = hostile.message(headers=(
        ("In-Reply-To", "<a@x.it> (comment)"),
        ("References", "<r1@x.it>\r\n <r2@x.it> <a@x.it>"),
        ("Content-Language", "it-IT"),
        ("Accept-Language", "en-US;q=0.8, it-IT, *"),
    ))
    result = parse_message(raw, LIMITS)
    assert result.in_reply_to == ("<a@x.it>",)
    assert result.references == ("<r1@x.it>", "<r2@x.it>", "<a@x.it>")
    assert result.language_hints == ("it-it", "en-us")


def test_folded_subject_is_unfolded() -> None:
    raw = hostile.message(subject="Richiesta\r\n  di reset")
    assert parse_message(raw, LIMITS).subject == "Richiesta  di reset"


def test_multibyte_character_split_across_encoded_words() -> None:
    raw = hostile.message(subject="=?utf-8?q?caff=C3?= =?utf-8?q?=A8_pronto?=")
    assert parse_message(raw, LIMITS).subject == "caffè pronto"


def test_undecodable_encoded_word_is_kept_not_dropped() -> None:
    result = parse_message(hostile.message(subject="Re: =?utf-8?q?caf=E9?= ok"), LIMITS)
    assert result.subject == "Re: caf\ufffd ok"
    assert "encoded-word-undecodable: utf-8" in result.defects


def test_raw_8bit_latin1_header_becomes_replacement_character() -> None:
    raw = hostile.message().replace(b"Subject: Prova", b"Subject: Citt\xe0")
    result = parse_message(raw, LIMITS)
    assert result.subject == "Citt\ufffd"
    assert "header-8bit-invalid: subject" in result.defects


# --------------------------------------------------------------------------
# From ambiguity


@pytest.mark.parametrize("value, addresses", [
    ('"Vitali, Chiara" <vice.referente@ateneo.example.it>', ["vice.referente@ateneo.example.it"]),
    ("Mario Rossi <mario.rossi@ateneo.example.it>", ["mario.rossi@ateneo.example.it"]),
    ("mario.rossi@ateneo.example.it", ["mario.rossi@ateneo.example.it"]),
    ("=?utf-8?q?Vitali=2C_Chiara?= <v@ateneo.example.it>", ["v@ateneo.example.it"]),
    ('"A" <a@x.it>, "B" <b@x.it>', ["a@x.it", "b@x.it"]),
    ("referente.tecnico@ateneo.example.it (Referente tecnico - L. Bassani)", ["referente.tecnico@ateneo.example.it"]),
    ("mario.rossi@ateneo.example.it(Rossi, Mario)", ["mario.rossi@ateneo.example.it"]),
    ('"referente.tecnico@ateneo.example.it" <referente.tecnico@ateneo.example.it>',
     ["referente.tecnico@ateneo.example.it"]),
    ('"Referente.Tecnico@Ateneo.Example.IT" <referente.tecnico@ateneo.example.it>',
     ["referente.tecnico@ateneo.example.it"]),
])
def test_unambiguous_from(value: str, addresses: list[str]) -> None:
    result = parse_message(hostile.ambiguous_from(value), LIMITS)
    assert [a.addr for a in result.from_addresses] == addresses
    assert not result.from_ambiguous


@pytest.mark.parametrize("value", [
    '"referente.tecnico@ateneo.example.it" <evil@x.example>',
    '"referente.tecnico@ateneo.example.it, evil@x.example" <evil@x.example>',
    '"evil@x.example (referente.tecnico@ateneo.example.it)" <evil@x.example>',
    "referente.tecnico@ateneo.example.it <evil@x.example>",
    "=?utf-8?q?referente.tecnico=40ateneo.example.it?= <evil@x.example>",
    "evil@x.example (referente.tecnico@ateneo.example.it)",
    "evil@x.example (=?utf-8?q?referente.tecnico=40ateneo.example.it?=)",
    "evil@x.example (Evil) (a second comment)",
    "evil@x.example (Evil (nested))",
    "evil(comment)@x.example",
    "(Evil) evil@x.example",
    "Evil <evil@x.example> (comment)",
    "evil@x.example (Evil), other@x.example",
    "Evil (a (nested) comment) <evil@x.example>",
    "staff: a@x.example, b@x.example;",
    '"unbalanced <evil@x.example>',
    "Evil <evil@x.example",
    "<evil@x.example> <referente.tecnico@ateneo.example.it>",
    "Evil <evil@x.example> trailing",
    "MAILER-DAEMON",
])
def test_ambiguous_from(value: str) -> None:
    result = parse_message(hostile.ambiguous_from(value), LIMITS)
    assert result.from_ambiguous
    assert any(d.startswith("from-ambiguous") for d in result.defects)


def test_two_from_fields_are_ambiguous_and_both_kept() -> None:
    raw = hostile.message(extra=b"From: referente.tecnico@ateneo.example.it\r\n")
    result = parse_message(raw, LIMITS)
    assert result.from_ambiguous
    assert [a.addr for a in result.from_addresses] == [
        hostile.SENDER, "referente.tecnico@ateneo.example.it",
    ]


def test_absent_from_is_empty_and_noted() -> None:
    raw = hostile.message().replace(f"From: Mario Rossi <{hostile.SENDER}>\r\n".encode(), b"")
    result = parse_message(raw, LIMITS)
    assert result.from_addresses == ()
    assert "from-missing" in result.defects


# --------------------------------------------------------------------------
# Bodies, charsets, transfer encodings


def test_declared_latin1_is_read_as_windows_1252() -> None:
    raw = hostile.message(b"\x93citt\xe0\x94 \x80 10", content_type="text/plain; charset=ISO-8859-1")
    assert parse_message(raw, LIMITS).body_text == "“città” € 10"


@pytest.mark.parametrize("charset", hostile.BROKEN_CHARSETS)
def test_broken_charsets_fall_back_to_utf8_without_running_codecs(charset: str) -> None:
    raw = hostile.broken_charset(charset)
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.body_text == "Caff\ufffd \\x41 \\N{BULLET} \\u0000 fine"
    assert result.subject == "Caff\ufffd \\x41Ciao"
    assert result.attachments[0].filename == "modulo\\x41.pdf"
    assert any(d.startswith("body-charset-unknown") for d in result.defects)


def test_broken_base64_is_decoded_best_effort() -> None:
    raw = hostile.broken_base64()
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.body_text.startswith("Hello WorldCiao amici")
    assert "base64-invalid" in result.defects


def test_broken_quoted_printable_is_decoded_best_effort() -> None:
    raw = hostile.broken_quoted_printable()
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.body_text == "Caffè =ZZ prezzo 100 fine =4"
    assert "quoted-printable-invalid" in result.defects


def test_attachment_names_rfc2231_and_rfc2047_and_base64_size() -> None:
    body = (
        b"--m\r\nContent-Type: text/plain\r\n\r\nciao\r\n"
        b"--m\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''Modulo%20attivit%C3%A0.pdf\r\n\r\n"
        b"AAECAwQFBgcICQ==\r\n"
        b"--m\r\nContent-Type: image/png; name=\"=?utf-8?q?Citt=C3=A0.png?=\"\r\n\r\nPNG\r\n"
        b"--m--\r\n"
    )
    result = parse_message(hostile.message(body, content_type='multipart/mixed; boundary="m"'), LIMITS)
    assert [(a.filename, a.content_type, a.size) for a in result.attachments] == [
        ("Modulo attività.pdf", "application/pdf", 10),
        ("Città.png", "image/png", 3),
    ]
    assert result.body_text == "ciao"


def test_nested_boundaries_that_share_a_prefix() -> None:
    body = (
        b"preambolo ignorato\r\n"
        b"--b\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n"
        b"--b2\r\nContent-Type: text/plain\r\n\r\nTesto semplice\r\n--b2-x\r\nancora testo\r\n"
        b"--b2\r\nContent-Type: text/html\r\n\r\n<p>HTML</p>\r\n--b2--\r\n"
        b"--b \r\nContent-Type: text/csv; name=\"dati.csv\"\r\n\r\na;b\r\n1;2\r\n"
        b"--b--\r\nepilogo ignorato\r\n"
    )
    result = parse_message(hostile.message(body, content_type='multipart/mixed; boundary="b"'), LIMITS)
    assert result.body_text == "Testo semplice\r\n--b2-x\r\nancora testo".replace("\r\n", "\n")
    assert [(a.filename, a.content_type, a.size) for a in result.attachments] == [("dati.csv", "text/csv", 8)]
    assert result.defects == ()


def test_missing_close_delimiter_keeps_the_last_part() -> None:
    body = b"--z\r\nContent-Type: text/plain\r\n\r\nTesto senza chiusura\r\n"
    result = parse_message(hostile.message(body, content_type="multipart/mixed; boundary=z"), LIMITS)
    assert result.body_text == "Testo senza chiusura"
    assert "multipart-close-missing" in result.defects


def test_multipart_without_delimiters_is_read_as_text() -> None:
    raw = hostile.message(b"Solo testo", content_type="multipart/mixed; boundary=mai")
    result = parse_message(raw, LIMITS)
    assert result.body_text == "Solo testo"
    assert "multipart-start-missing" in result.defects


@pytest.mark.parametrize(
    "raw", [b"", b"\r\n\r\n", b"Subject: solo intestazioni", b"From nobody\r\nSubject: x\r\n\r\ny"]
)
def test_degenerate_messages(raw: bytes) -> None:
    result = parse_message(raw, LIMITS)
    assert_sane(result, raw)
    assert "message-id-missing" in result.defects


def test_body_is_cut_at_max_body_chars() -> None:
    limits = dataclasses.replace(LIMITS, max_body_chars=50)
    result = parse_message(hostile.message(b"parola " * 1000), limits)
    assert len(result.body_text) == 50
    assert "body-truncated" in result.defects


# --------------------------------------------------------------------------
# Hostile shapes


def test_thousand_nested_multiparts() -> None:
    raw = hostile.nested_multiparts(1000)
    result = guarded(raw)
    assert_sane(result, raw)
    assert "nesting-truncated" in result.defects


def test_five_thousand_parts() -> None:
    raw = hostile.many_parts(5000)
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.body_text == "Testo principale"
    assert len(result.attachments) == LIMITS.max_parts - 1
    assert "parts-truncated: 200" in result.defects


def test_huge_subject_of_malformed_encoded_words() -> None:
    raw = hostile.malformed_encoded_subject(480_000)
    result = guarded(raw)
    assert_sane(result, raw)
    assert "header-truncated: subject" in result.defects
    assert "encoded-words-capped" in result.defects
    assert [a.addr for a in result.from_addresses] == [hostile.SENDER]


def test_two_megabyte_header_does_not_hide_the_others() -> None:
    raw = hostile.huge_header(2_000_000)
    result = guarded(raw)
    assert_sane(result, raw)
    assert "header-truncated: x-junk" in result.defects
    assert result.subject == "Prova"
    assert result.body_text == "Buongiorno,\nprova."


def test_header_block_is_capped_as_a_whole() -> None:
    limits = dataclasses.replace(LIMITS, max_header_bytes=1024)
    fields = tuple((f"X-Filler-{i}", "y" * 900) for i in range(10))
    raw = hostile.message(headers=fields)
    result = guarded(raw, limits)
    assert_sane(result, raw, limits)
    assert "header-block-truncated" in result.defects
    assert result.body_text == "Buongiorno,\nprova."


@pytest.mark.parametrize("value", hostile.ABSURD_DATES)
def test_absurd_dates_become_none(value: str) -> None:
    raw = hostile.absurd_date(value)
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.date is None
    assert result.received_at is None
    assert any(d.startswith("date-invalid") for d in result.defects)


def test_header_injection_in_encoded_words_stays_on_one_line() -> None:
    raw = hostile.header_injection()
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.subject == "Ciao  Bcc: vittima@example.org    Corpo iniettato"
    assert [a.addr for a in result.from_addresses] == [hostile.SENDER]
    assert result.from_addresses[0].name == "Mario Reply-To: x@evil.example"
    assert result.from_ambiguous
    assert result.reply_to == ()


def test_nul_bytes_are_removed() -> None:
    raw = hostile.nul_bytes()
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.subject == "Pro va"
    assert result.body_text == "Buongiorno"


def test_utf8_in_headers() -> None:
    raw = hostile.eight_bit_headers()
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.subject == "Città e perché"
    assert result.from_addresses[0].name == "Niccolò Ré"


def test_message_rfc822_with_8bit_content() -> None:
    raw = hostile.rfc822_with_8bit()
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.body_text == "Vi inoltro il messaggio."
    assert [a.content_type for a in result.attachments] == ["message/rfc822"]


def test_html_bomb_is_converted_in_bounded_work() -> None:
    raw = hostile.html_bomb()
    result = guarded(raw)
    assert_sane(result, raw)
    assert result.body_from_html
    assert result.body_text.startswith("Testo visibile")


def test_25_megabyte_attachment_is_measured_not_decoded() -> None:
    size = 25 * 1024 * 1024
    raw = hostile.big_attachment(size)
    tracemalloc.start()
    try:
        result = parse_message(raw, LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 1024 * 1024
    assert_sane(result, raw)
    (attachment,) = result.attachments
    assert attachment.filename == "archivio.bin"
    assert abs(attachment.size - size) <= 3
    assert result.body_text == "In allegato il file."


def test_small_limits_are_respected() -> None:
    limits = dataclasses.replace(LIMITS, max_parts=5, max_depth=3, max_body_chars=100, max_header_bytes=512)
    shapes = (hostile.many_parts(50), hostile.nested_multiparts(10), hostile.malformed_encoded_subject(5000))
    for raw in shapes:
        assert_sane(guarded(raw, limits), raw, limits)


def test_an_internal_fault_still_returns_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(raw: bytes, limits: Limits) -> ParsedMessage:
        raise RuntimeError("boom")

    monkeypatch.setattr(parsing, "_parse", explode)
    result = parse_message(b"From: a@b.it\r\n\r\nx", LIMITS)
    assert result.defects == ("parser-fault: RuntimeError",)
    assert result.from_ambiguous
    assert result.size == 17


# --------------------------------------------------------------------------
# Properties

_HEADER_NAMES = st.sampled_from([
    "From", "To", "Cc", "Reply-To", "Sender", "Subject", "Date", "Received", "Message-ID", "Return-Path",
    "In-Reply-To", "References", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
    "Authentication-Results", "Auto-Submitted", "Precedence", "Content-Language", "X-Autoreply",
])
_HEADER_TOKENS = [*'abc@.<>()",:;=?_ \t\r\n\\/*-+\x00\x7féà€', "=?utf-8?q?", "=?x?b?", "?=", "=C3", "QQ"]
_HEADER_TEXT = st.lists(st.sampled_from(_HEADER_TOKENS), max_size=40).map("".join)
_FIELDS = st.lists(st.tuples(_HEADER_NAMES, _HEADER_TEXT), max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert_sane(parse_message(raw, LIMITS), raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_FIELDS, st.binary(max_size=512))
def test_arbitrary_header_text_never_raises(fields: list[tuple[str, str]], body: bytes) -> None:
    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    raw = head.encode("utf-8") + b"\r\n" + body
    assert_sane(parse_message(raw, LIMITS), raw)


def test_only_the_screened_header_fields_are_kept_first_value_cut() -> None:
    raw = (b"From: a@example.org\r\nList-Id: Tecnici <tecnici.liste.example.it>\r\n"
           b"List-Id: second <ignored.example.it>\r\nX-Failed-Recipients:\r\n  folded@example.org\r\n"
           b"List-Unsubscribe: <mailto:" + b"x" * 1000 + b"@example.org>\r\nX-Mailer: not kept\r\n"
           b"Subject: hi\r\n\r\nbody\r\n")
    kept = dict(parse_message(raw, LIMITS).screened_fields)
    assert set(kept) == {"list-id", "x-failed-recipients", "list-unsubscribe"}
    assert kept["list-id"] == "Tecnici <tecnici.liste.example.it>"
    assert kept["x-failed-recipients"] == "folded@example.org"
    assert len(kept["list-unsubscribe"]) == parsing.headers.SCREENED_VALUE_CHARS


def test_every_header_field_the_shipped_screening_data_reads_is_kept_by_the_parser() -> None:
    named = {on.removeprefix(HEADER_FIELD) for on in load_screening().fields if on.startswith(HEADER_FIELD)}
    assert named and named <= set(parsing.headers.SCREENED_FIELDS)
