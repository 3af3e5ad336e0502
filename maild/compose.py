"""RFC 5322 bytes of maild's replies, written directly from already-validated parts.

Why not just the ``email`` package: building an ``EmailMessage`` parses every
header through the header registry and refolds it on output, which cost about
0.5 ms per reply, most of the render stage on the daemon's hot path. A reply
has a fixed shape, and every part of it is already clean when it gets here
(the recipient is a plain mailbox, the ids are checked, the subject went
through ``clean_line``), so the bytes can be written out directly.

The ``email`` package stays the reference: ``compose_reference`` is the
composition maild has always used, and the direct one only handles the drafts
whose every header it can write exactly as the reference would (short
addresses and Message-IDs, ordinary dates). Anything else (a 90-character
recipient, an odd Message-ID, a body with lone surrogates) goes through the
reference, which folds it or raises ``TemplateError`` as before. The subject
is still encoded by ``email.header.Header`` and the body by the stdlib
quoted-printable encoder, so both are the reference's own bytes; the tests
compare the two compositions byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email import policy, quoprimime
from email.errors import MessageError
from email.header import Header
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final

from maild.errors import TemplateError
from maild.settings import Helpdesk

# Headers go out with CRLF. ``refold_source="none"`` lets In-Reply-To and
# References (set raw, already validated) pass unchanged: the default refolding
# would RFC 2047-encode a long Message-ID, which breaks threading.
POLICY: Final = policy.SMTP.clone(refold_source="none")

_MAX_LINE: Final = 78
"""The policy's folding width: a header no longer than this is written as is."""
_SUBJECT_ROOM: Final = 78 - len("Subject: ")
"""``Header`` wraps at 78 columns (its MAXLINELEN), name included: a shorter ASCII subject is left as is."""
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_ADDR: Final = rf"{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*"
_SIMPLE_ADDR: Final = re.compile(_DOT_ATOM_ADDR)
"""A recipient the header registry writes verbatim."""
_SIMPLE_MSGID: Final = re.compile(f"<{_DOT_ATOM_ADDR}>")
"""A Message-ID the header registry writes verbatim (dot-atom on both sides)."""
_RAW_MSGID: Final = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")
"""In-Reply-To and References ids (set raw, so written as they are): one line, printable ASCII."""
_TOKEN: Final = re.compile(r"[a-z]+(?:-[a-z]+)*")
"""Auto-Submitted and Content-Language values: the registry passes these through unchanged."""
_MIN_YEAR: Final = 1900
"""Before this, the registry's Date round trip may reinterpret the year; the reference handles it."""
_MIME_TAIL: Final = (
    'Content-Type: text/plain; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "MIME-Version: 1.0\r\n"
)


@dataclass(frozen=True, slots=True)
class Draft:
    """A rendered message before it becomes bytes."""

    kind: str
    recipient: str
    subject: str
    body: str
    language: str
    message_id: str
    now: datetime
    auto_submitted: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


class Composer:
    """Turns drafts into bytes for one help desk, identical to ``compose_reference``."""

    def __init__(self, helpdesk: Helpdesk, tz: tzinfo) -> None:
        """Fold the From header once: it is the same on every reply."""
        self._helpdesk = helpdesk
        self._tz = tz
        self._from_line = _from_line(helpdesk)

    def compose(self, draft: Draft, to: HeaderAddress) -> bytes:
        """Bytes of the message (CRLF, quoted-printable UTF-8) for the already-checked ``to``."""
        data = self.direct(draft, to)
        return data if data is not None else compose_reference(draft, to, self._helpdesk, self._tz)

    def direct(self, draft: Draft, to: HeaderAddress) -> bytes | None:
        """The bytes written directly, or None when the draft needs the reference's folding."""
        try:
            local_now = draft.now.astimezone(self._tz) if draft.now.tzinfo is not None else draft.now
        except (ValueError, OverflowError):
            return None  # the reference fails on it the way it always has
        if self._from_line is None or not _verbatim(draft, to, local_now):
            return None
        subject = _subject_value(draft.subject)
        body = _body(draft.body)
        if subject is None or body is None:
            return None
        head = [
            self._from_line,
            f"To: {to.addr_spec}\r\n",
            f"Subject: {subject}\r\n",
            f"Date: {format_datetime(local_now)}\r\n",
            f"Message-ID: {draft.message_id}\r\n",
        ]
        if draft.in_reply_to is not None:
            head.append(f"In-Reply-To: {draft.in_reply_to}\r\n")
        if draft.references:
            head.append("References: " + "\r\n ".join(draft.references) + "\r\n")
        head += [
            f"Auto-Submitted: {draft.auto_submitted}\r\n",
            "X-Auto-Response-Suppress: All\r\n",
            _MIME_TAIL,
            f"Content-Language: {draft.language}\r\n",
            "\r\n",
        ]
        return "".join(head).encode("ascii") + body


def _verbatim(draft: Draft, to: HeaderAddress, local_now: datetime) -> bool:
    """True when the reference would write To, Message-ID, Date and the raw ids exactly as given.

    That is: short enough not to be folded, of a grammar the header registry
    does not rewrite, and a year its Date round trip cannot reinterpret.
    """
    thread = draft.references if draft.in_reply_to is None else (draft.in_reply_to, *draft.references)
    return (
        not to.display_name
        and _SIMPLE_ADDR.fullmatch(to.addr_spec) is not None
        and len("To: ") + len(to.addr_spec) <= _MAX_LINE
        and len("Message-ID: ") + len(draft.message_id) <= _MAX_LINE
        and _SIMPLE_MSGID.fullmatch(draft.message_id) is not None
        and local_now.year >= _MIN_YEAR
        and _TOKEN.fullmatch(draft.auto_submitted) is not None
        and _TOKEN.fullmatch(draft.language) is not None
        and all(_RAW_MSGID.fullmatch(i) for i in thread)
    )


def compose_reference(draft: Draft, to: HeaderAddress, helpdesk: Helpdesk, tz: tzinfo) -> bytes:
    """The message built only by the ``email`` package: the definition of what maild sends."""
    msg = EmailMessage(policy=POLICY)
    try:
        msg["From"] = HeaderAddress(display_name=helpdesk.name, addr_spec=helpdesk.address)
        msg["To"] = to
        msg.set_raw("Subject", encoded_subject(draft.subject))
        local_now = draft.now.astimezone(tz) if draft.now.tzinfo is not None else draft.now
        msg["Date"] = format_datetime(local_now)
        msg["Message-ID"] = draft.message_id
        if draft.in_reply_to is not None:
            msg.set_raw("In-Reply-To", draft.in_reply_to)
        if draft.references:
            msg.set_raw("References", "\n ".join(draft.references))
        msg["Auto-Submitted"] = draft.auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
        msg.set_content(normalise_body(draft.body), subtype="plain", charset="utf-8",
                        cte="quoted-printable")
        msg["Content-Language"] = draft.language  # after set_content, which clears Content-*
        if str(msg["Subject"]) != draft.subject:
            raise TemplateError(f"subject {draft.subject!r} does not survive header encoding")
        return msg.as_bytes()
    except (MessageError, ValueError, TypeError) as exc:
        raise TemplateError(f"cannot build the {draft.kind} message: {exc}") from exc


def encoded_subject(subject: str) -> str:
    """The Subject as it goes on the wire.

    The email package's own folding may put a space *between* two encoded-words,
    where RFC 2047 says a decoder drops it; ``Header`` cuts non-ASCII text into
    encoded-words at character boundaries instead, so every space survives.
    """
    charset = "us-ascii" if subject.isascii() else "utf-8"
    return Header(subject, charset, header_name="Subject").encode(linesep="\n")


def normalise_body(text: str) -> str:
    """LF line ends, no trailing blanks, exactly one final newline."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


def _from_line(helpdesk: Helpdesk) -> str | None:
    """The folded From header with its CRLF, as the reference writes it; None if it cannot be built.

    A name the email package refuses is left to the reference, so it fails
    at the first reply exactly as it always has.
    """
    msg = EmailMessage(policy=POLICY)
    try:
        msg["From"] = HeaderAddress(display_name=helpdesk.name, addr_spec=helpdesk.address)
        head = msg.as_bytes()
    except (MessageError, ValueError, TypeError):
        return None
    return head.removesuffix(b"\r\n").decode("ascii") if head.isascii() else None


def _subject_value(subject: str) -> str | None:
    """The encoded Subject value with CRLF folds, or None when it cannot be encoded or does not survive.

    The reference reads the header back through the registry and refuses a
    subject that does not come back unchanged; the same check is made here.
    For printable ASCII with no ``=?`` the registry only unfolds, so the check
    is a comparison of the unfolded text, and a short one is not even folded.
    """
    plain = subject.isascii() and subject.isprintable() and "=?" not in subject
    if plain and len(subject) <= _SUBJECT_ROOM:
        return subject
    try:
        encoded = encoded_subject(subject)
        if plain:
            survives = encoded.replace("\n", "") == subject
        else:
            survives = str(POLICY.header_fetch_parse("Subject", encoded)) == subject
    except (MessageError, ValueError):
        return None  # the reference raises its TemplateError for it
    return "\r\n".join(encoded.splitlines()) if survives else None


def _body(text: str) -> bytes | None:
    """The quoted-printable body with CRLF line ends, as ``set_content`` and the generator write it."""
    try:
        raw = normalise_body(text).encode("utf-8")
    except UnicodeEncodeError:
        return None
    return quoprimime.body_encode(raw.decode("latin-1"), _MAX_LINE, eol="\r\n").encode("ascii")
