"""The direct composition of replies is the email package's composition, byte for byte.

``compose_reference`` builds each message with ``EmailMessage`` exactly as
maild always has; the direct writer must produce the same bytes. Each check
also parses both with the stdlib parser (``policy.default``) and compares
every header and the decoded body, so a failure reads as "Subject differs",
not as two blobs of bytes.
"""

from __future__ import annotations

import email
import string
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email import policy, quoprimime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import maild.responder as responder_module
from maild.daemon.intake import replies_for
from maild.mail.compose import (
    POLICY,
    Composer,
    Draft,
    compose_reference,
    encoded_body,
    encoded_subject,
    encoded_words,
    folded_subject,
    normalise_body,
    rfc5322_date,
)
from maild.mail.parsing import parse_message
from maild.pipeline import Triager, received_time
from maild.records import Disposition, OutgoingMail
from maild.responder import Responder, make_message_id, reply_subject, thread_ids
from maild.rules.screening import load_screening
from maild.settings import Helpdesk
from tests.daemon_kit import HIGH_LIMITS
from tests.factories import settings as make_settings
from tests.mailgen import corpus_mix
from tests.test_responder import HOSTILE_SUBJECTS

ROME = ZoneInfo("Europe/Rome")
HELPDESK = Helpdesk(
    address="helpdesk-posta@servizi.example.it",
    name="Help Desk Posta Elettronica",
    trusted_authserv_ids=("mx.servizi.example.it",),
)
NOW = datetime(2027, 1, 18, 10, 0, 7, tzinfo=UTC)
REF = "HD-2027-000123"
SCREENING = load_screening()


def draft(**changes: object) -> Draft:
    base: dict[str, object] = {
        "kind": "ack", "recipient": "mario.rossi@comune.example.it",
        "subject": "Re: Reset password [HD-2027-000123]", "body": "Gentile utente,\n\nè fatto.\n",
        "language": "it", "message_id": "<HD-2027-000123.ack.0123456789abcdef@servizi.example.it>",
        "now": NOW, "auto_submitted": "auto-replied", "in_reply_to": "<CAB1234@mail.comune.example.it>",
        "references": ("<root@comune.example.it>", "<CAB1234@mail.comune.example.it>"),
    }
    base.update(changes)
    return Draft(**base)  # type: ignore[arg-type]


def to_of(d: Draft) -> HeaderAddress:
    local, _, domain = d.recipient.rpartition("@")
    return HeaderAddress(username=local, domain=domain)


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_same_message(new: bytes, old: bytes) -> None:
    """Same headers in the same order, same values, same decoded body, same bytes; wire rules kept."""
    new_msg, old_msg = parsed(new), parsed(old)
    assert new_msg.keys() == old_msg.keys()
    for name in old_msg:
        assert [str(v) for v in new_msg.get_all(name) or []] == [str(v) for v in old_msg.get_all(name) or []], name
    assert new_msg["Date"].datetime == old_msg["Date"].datetime
    assert new_msg["From"].addresses == old_msg["From"].addresses
    assert new_msg["To"].addresses == old_msg["To"].addresses
    assert new_msg.get_content() == old_msg.get_content()
    assert not new_msg.defects
    assert new == old
    assert new.endswith(b"\r\n")
    assert new.count(b"\n") == new.count(b"\r\n") == new.count(b"\r")
    assert max(new) < 128
    assert all(len(line) <= 998 for line in new.split(b"\r\n"))


def assert_direct_matches(composer: Composer, d: Draft, helpdesk: Helpdesk = HELPDESK) -> None:
    """The direct writer handles ``d`` itself, and its bytes are the reference's."""
    to = to_of(d)
    data = composer.direct(d, to)
    assert data is not None, "the direct writer left an ordinary draft to the reference"
    assert_same_message(data, compose_reference(d, to, helpdesk, ROME))


# --------------------------------------------------------------------------
# The corpus mix, through the Responder as the daemon calls it


class RecordingComposer(Composer):
    """Checks every draft the Responder composes against the reference, and counts them."""

    def __init__(self, helpdesk: Helpdesk, tz: tzinfo) -> None:
        super().__init__(helpdesk, tz)
        self.helpdesk, self.tz = helpdesk, tz
        self.seen: Counter[str] = Counter()

    def compose(self, draft: Draft, to: HeaderAddress) -> bytes:
        data = self.direct(draft, to)
        assert data is not None, f"{draft.kind} for {draft.recipient} left to the reference"
        assert_same_message(data, compose_reference(draft, to, self.helpdesk, self.tz))
        self.seen[draft.kind] += 1
        if not draft.subject.isascii():
            self.seen["non-ascii subject"] += 1
        if b"\r\nSubject: " in data and b"\r\n " in data.split(b"\r\nSubject: ", 1)[1].split(b"\r\nDate:", 1)[0]:
            self.seen["folded subject"] += 1
        return data


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Responder, RecordingComposer]]:
    config = make_settings(limits=HIGH_LIMITS)
    made: list[RecordingComposer] = []

    def factory(helpdesk: Helpdesk, tz: tzinfo) -> RecordingComposer:
        made.append(RecordingComposer(helpdesk, tz))
        return made[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(responder_module, "Composer", factory)
        responder = Responder(config.templates.path, config.helpdesk, timezone=config.service_hours.timezone)
    yield responder, made[0]


def corpus_dispositions(count: int, now: datetime) -> list[Disposition]:
    config = make_settings(limits=HIGH_LIMITS)
    triager = Triager.from_settings(config)
    out = []
    for sample in corpus_mix(count, tag="compose"):
        message = parse_message(sample.raw, config.limits)
        out.append(triager.decide(message, received_at=min(received_time(message, now), now)))
    return out


@pytest.mark.parametrize("now", [NOW, datetime(2027, 7, 3, 22, 59, 58, 123456, tzinfo=UTC)])
def test_corpus_replies_are_the_reference_bytes(
    recording: tuple[Responder, RecordingComposer], now: datetime,
) -> None:
    responder, composer = recording
    config = make_settings(limits=HIGH_LIMITS)
    composer.seen.clear()
    replies: list[OutgoingMail] = []
    for index, d in enumerate(corpus_dispositions(240, now)):
        ref = f"HD-2027-{index:06d}"
        replies += [r for r in replies_for(d, ref, f"{index:064x}", now, responder, config, SCREENING, followup=False)
                    if isinstance(r, OutgoingMail)]
        if d.message.from_addresses:
            replies.append(responder.resolution(
                ticket_ref=ref, requester=d.message.from_addresses[0], subject=d.message.subject,
                language=d.language, category=d.category, note="Fatto.\r\nSaluti" if index % 2 else None,
                in_reply_to=d.message.message_id, references=d.message.references,
                message_id=make_message_id(HELPDESK.address, f"{ref}.resolution.1"), now=now,
            ))
    assert all(r.recipients and r.data for r in replies)
    for kind in ("ack", "refusal", "referente_notice", "resolution", "non-ascii subject", "folded subject"):
        assert composer.seen[kind] > 0, f"the corpus mix never exercised {kind}"


# --------------------------------------------------------------------------
# Edges of the direct writer: where folding starts, odd names and times


@pytest.fixture(scope="module")
def composer() -> Composer:
    return Composer(HELPDESK, ROME)


@pytest.mark.parametrize("length", range(60, 80))
def test_subjects_around_the_folding_width(composer: Composer, length: int) -> None:
    ascii_words = ("Re: " + "parola " * 20)[: length - 1] + "x"
    assert len(ascii_words) == length
    assert_direct_matches(composer, draft(subject=ascii_words))
    assert_direct_matches(composer, draft(subject="Re: " + "x" * length))
    assert_direct_matches(composer, draft(subject=("Re: è " + "perché " * 20)[:length]))


@pytest.mark.parametrize("length", range(72, 80))
def test_recipients_around_the_folding_width(composer: Composer, length: int) -> None:
    d = draft(recipient="m" * (length - len("To: @example.it")) + "@example.it")
    if length <= 78:
        assert_direct_matches(composer, d)
    else:
        assert composer.direct(d, to_of(d)) is None
        assert_same_message(composer.compose(d, to_of(d)), compose_reference(d, to_of(d), HELPDESK, ROME))


@pytest.mark.parametrize("length", range(72, 80))
def test_message_ids_around_the_folding_width(composer: Composer, length: int) -> None:
    d = draft(message_id="<" + "m" * (length - len("Message-ID: <@example.it>")) + "@example.it>")
    if length <= 78:
        assert_direct_matches(composer, d)
    else:
        assert composer.direct(d, to_of(d)) is None
        assert_same_message(composer.compose(d, to_of(d)), compose_reference(d, to_of(d), HELPDESK, ROME))


@pytest.mark.parametrize("now", [
    NOW, datetime(2026, 10, 25, 0, 59, 59, tzinfo=UTC), datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    datetime(2027, 3, 28, 1, 30, tzinfo=UTC), datetime(2027, 1, 18, 10, 0), datetime(1900, 1, 1, 12, 0),
    datetime(2027, 1, 18, 10, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
], ids=str)
def test_dates(composer: Composer, now: datetime) -> None:
    assert_direct_matches(composer, draft(now=now))


@pytest.mark.parametrize("now", [datetime(50, 6, 1, 12, 0), datetime(50, 6, 1, 12, 0, tzinfo=UTC),
                                 datetime(999, 6, 1, 12, 0, tzinfo=UTC), datetime(1899, 12, 31, 23, 0)], ids=str)
def test_early_years_keep_the_reference_date(composer: Composer, now: datetime) -> None:
    """The registry reads a two-digit year as 19xx/20xx; such dates are left to it."""
    d = draft(now=now)
    assert composer.direct(d, to_of(d)) is None
    assert_same_message(composer.compose(d, to_of(d)), compose_reference(d, to_of(d), HELPDESK, ROME))


@pytest.mark.parametrize("name", [
    "Help Desk", "Help Desk, Servizi (Posta)", 'Help "Desk"', "Assistenza Università", "H" * 120,
    "Servizio di assistenza agli utenti della posta elettronica istituzionale dell'Ateneo",
])
def test_from_names(name: str) -> None:
    helpdesk = Helpdesk(address=HELPDESK.address, name=name, trusted_authserv_ids=())
    assert_direct_matches(Composer(helpdesk, ROME), draft(), helpdesk)


def test_threading_variants(composer: Composer) -> None:
    long_id = "<" + "a" * 240 + "@example.it>"
    for parent, refs in [(None, ()), ("<p@x>", ()), ("<p@x>", ("<r@x>", long_id, "<a..b@[1.2.3.4]>"))]:
        assert_direct_matches(composer, draft(in_reply_to=parent, references=refs))


@pytest.mark.parametrize("subject", HOSTILE_SUBJECTS.values(), ids=HOSTILE_SUBJECTS.keys())
def test_hostile_subjects_compose_as_the_reference(composer: Composer, subject: str) -> None:
    """Cleaned as the Responder cleans them they are written directly; raw, they fail or match alike."""
    assert_direct_matches(composer, draft(subject=reply_subject(subject, REF)))
    d = draft(subject=subject)
    assert outcome(lambda: composer.compose(d, to_of(d))) == outcome(
        lambda: compose_reference(d, to_of(d), HELPDESK, ROME))


def test_bodies(composer: Composer) -> None:
    for text in ("", "\n\n", "riga  \r\nriga\t\rfine", "x" * 500, "à" * 300 + " ", "=?utf-8?q?x?= =3D",
                 "From the desk\n.\n", "\u2028\x85\x0b\x0c\x1c line breaks that are not LF"):
        assert_direct_matches(composer, draft(body=text))


# --------------------------------------------------------------------------
# Anything at all: same bytes, or the same TemplateError


def outcome(call: Callable[[], bytes]) -> bytes | str:
    """The bytes, or the exception as text: the two compositions must fail alike too.

    Some inputs no reply carries (a Message-ID of just ``<``) make the email
    package itself raise something other than a ``MessageError``; the direct
    writer must leave those to it rather than succeed or fail differently.
    """
    try:
        result = call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    assert isinstance(result, bytes)
    return result


ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
atoms = st.text(ATEXT, min_size=1, max_size=30)
dot_atoms = st.lists(atoms, min_size=1, max_size=4).map(".".join)
mailboxes = st.tuples(dot_atoms, dot_atoms).map("@".join)
message_ids = st.one_of(mailboxes.map("<{}>".format), st.text(max_size=90))
any_ids = st.one_of(message_ids, st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60))
FRAGMENTS = ("Re:", " ", "\n", "\r\n", "\r", "Bcc: x@y", "\udcff", "=?utf-8?q?", "?=", "è", "\t", "\u2028",
             "\x00", "\u202e", "x" * 70)
hostile_text = st.one_of(
    st.text(max_size=300),
    st.sampled_from(list(HOSTILE_SUBJECTS.values())),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join),
)
times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
)


@settings(deadline=None, max_examples=600)
@given(
    recipient=mailboxes, subject=hostile_text, body=hostile_text, message_id=message_ids,
    now=times, in_reply_to=st.one_of(st.none(), any_ids), references=st.lists(any_ids, max_size=4),
    language=st.sampled_from(["it", "en", "EN", "de-CH", ""]),
)
def test_any_draft_composes_as_the_reference(
    composer: Composer, recipient: str, subject: str, body: str, message_id: str, now: datetime,
    in_reply_to: str | None, references: list[str], language: str,
) -> None:
    d = draft(recipient=recipient, subject=subject, body=body, message_id=message_id, now=now,
              in_reply_to=in_reply_to, references=tuple(references), language=language)
    to = to_of(d)
    assert outcome(lambda: composer.compose(d, to)) == outcome(lambda: compose_reference(d, to, HELPDESK, ROME))


@settings(deadline=None, max_examples=300)
@given(
    original_subject=st.text(max_size=400), body=st.text(st.characters(codec="utf-8"), max_size=600),
    kind=st.sampled_from(["ack", "refusal", "notice", "resolution"]),
    token=st.text("0123456789abcdef", min_size=16, max_size=16),
    parent=any_ids, references=st.lists(any_ids, max_size=12), now=times.filter(lambda t: t.year >= 1900),
    local=st.lists(atoms, min_size=1, max_size=2).map(".".join),
)
def test_every_reply_maild_can_render_is_written_directly(
    composer: Composer, original_subject: str, body: str, kind: str, token: str, parent: str,
    references: list[str], now: datetime, local: str,
) -> None:
    """Subjects, ids and bodies shaped as the Responder shapes them never need the reference."""
    in_reply_to, refs = thread_ids(parent, references)
    d = draft(subject=reply_subject(original_subject, REF), body=body, recipient=f"{local}@example.it",
              message_id=make_message_id(HELPDESK.address, f"{REF}.{kind}.{token}"), now=now,
              in_reply_to=in_reply_to, references=refs)
    assert_direct_matches(composer, d)


# --------------------------------------------------------------------------
# The stdlib encoders redone in maild.mail.compose, each against the one it replaces


def stdlib_body(text: str) -> bytes | None:
    """The body as ``set_content`` encodes it: ``quoprimime.body_encode`` at the policy's width."""
    try:
        raw = normalise_body(text).encode("utf-8")
    except UnicodeEncodeError:
        return None
    return quoprimime.body_encode(raw.decode("latin-1"), 78, eol="\r\n").encode("ascii")


def header_subject(subject: str) -> str:
    """``encoded_subject`` with the CRLF folds the direct writer puts on the wire."""
    return "\r\n".join(encoded_subject(subject).splitlines())


BODY_FRAGMENTS = (" ", "  ", "\t", "\n", "\r\n", "\r", "\n.\n", ".", "From ", "\nFrom ", "=", "=3D", "=\n",
                  "è", "€", "\U0001d11e", "\x00", "\x0b", "\x0c", "\x1c", "\x7f", "\x85", "\xa0", "\u2028",
                  "\u3000", "\udcff", "parola ", "x" * 73, "y" * 200)
bodies = st.one_of(
    st.text(max_size=400),
    st.lists(st.sampled_from(BODY_FRAGMENTS), max_size=60).map("".join),
    # Long lines whose cut falls on, just before or just after an escape or a blank.
    st.text(st.sampled_from("a=è€ \t.\n"), min_size=60, max_size=600),
)


@settings(deadline=None, max_examples=1500)
@given(text=bodies)
def test_body_is_the_stdlib_quoted_printable(text: str) -> None:
    assert encoded_body(text) == stdlib_body(text)


PLAIN_WORD = string.ascii_letters[:6] + string.digits[:3] + ";,.:[]-=?_\"'()"
words = st.one_of(st.text(PLAIN_WORD, min_size=1, max_size=12),
                  st.sampled_from(["Re:", "urgente;", "casella,", "x" * 60, "w" * 69, "w" * 70, "y" * 75]))
plain_subjects = st.lists(words, min_size=1, max_size=40).map(" ".join)


@settings(deadline=None, max_examples=1500)
@given(subject=st.one_of(plain_subjects, plain_subjects.map(lambda s: s.replace(" ", "  ", 1))))
def test_plain_subjects_fold_as_header_folds_them(subject: str) -> None:
    """Same folds as ``Header``, or None for the two shapes left to it."""
    folded = folded_subject(subject)
    parts = subject.split(" ")
    if folded is None:
        assert "" in parts or len(f"Subject: {parts[0]}") > 78
    else:
        assert folded == header_subject(subject)


SUBJECT_PIECES = ("Re:", " ", "è", "perché", "attività", "€", "日本語の件名", "Ж", "\U0001d11e", "_", "=", "?", "=?",
                  "?=", "[HD-2027-000123]", ";", ",", "x" * 40)
non_ascii_subjects = st.one_of(
    st.lists(st.sampled_from(SUBJECT_PIECES), min_size=1, max_size=30).map("".join),
    st.text(min_size=1, max_size=200),
).filter(lambda s: not s.isascii() and s.isprintable())


@settings(deadline=None, max_examples=1500)
@given(subject=non_ascii_subjects)
def test_non_ascii_subjects_encode_as_header_encodes_them(subject: str) -> None:
    """Same encoded words and folds as ``Header``, and the registry reads them back as the subject."""
    words = encoded_words(subject)
    assert words == header_subject(subject)
    assert str(POLICY.header_fetch_parse("Subject", words)) == subject


offsets = st.integers(-86_399, 86_399).map(lambda s: timezone(timedelta(seconds=s)))
whole_minutes = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))


@settings(deadline=None, max_examples=500)
@given(moment=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 31),
                           timezones=st.one_of(st.none(), st.just(UTC), st.just(ROME), offsets, whole_minutes)))
def test_dates_are_format_datetime(moment: datetime) -> None:
    assert rfc5322_date(moment) == format_datetime(moment)
