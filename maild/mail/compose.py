"""RFC 5322 bytes of maild's replies, written directly from already-validated parts.

Why not just the ``email`` package: building an ``EmailMessage`` parses every
header through the header registry and refolds it on output, which is most
of the render stage on the daemon's hot path. A reply
has a fixed shape, and every part of it is already clean when it gets here
(the recipient is a plain mailbox, the ids are checked, the subject went
through ``clean_line``), so the bytes can be written out directly.

The ``email`` package stays the reference: ``compose_reference`` defines
what maild sends, and the direct composition only handles the drafts
whose every header it can write exactly as the reference would (short
addresses and Message-IDs, ordinary dates). Anything else (a 90-character
recipient, an odd Message-ID, a body with lone surrogates) goes through the
reference, which folds it or raises ``TemplateError``. The stdlib
encoders that are pure Python and work a character or a word at a time, and
so cost most of a reply, are redone here for the shapes replies have: the
quoted-printable body, the folding of a long ASCII Subject, the encoded words
of a non-ASCII one, and the Date; any other shape still goes through the
stdlib. The tests compare the two compositions byte for byte, and each redone
encoder with the stdlib one it replaces.
"""

from __future__ import annotations

import re
import string
from base64 import b64encode
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from email import policy
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
_SUBJECT_HEAD: Final = len("Subject: ")
_SUBJECT_ROOM: Final = 78 - _SUBJECT_HEAD
"""``Header`` wraps at 78 columns (its MAXLINELEN), name included: a shorter ASCII subject is left as is."""
_SUBJECT_BREAKS: Final = ";,"
"""``Header``'s preferred places to fold, best first: after a word ending in one of these."""
_QP_ESCAPED: Final = re.compile(r"[^\t\n -<>-~][^\t\n -<>-~]*")
"""A run of what a quoted-printable body escapes: all but tab, LF and printable ASCII other than ``=``.

One character, then any more, rather than ``[...]+``: a pattern that starts
with a plain set lets the regex engine skip to its first match by a set scan.
"""
_WORD_CHROME: Final = len("=?utf-8?q??=")
"""What RFC 2047 adds around an encoded word's text (``Charset`` counts the charset name plus 7)."""
_FIRST_WORD_ROOM: Final = _SUBJECT_ROOM - _WORD_CHROME
_NEXT_WORD_ROOM: Final = _MAX_LINE - len(" ") - _WORD_CHROME
"""Encoded text on a continuation line, which starts with the folding space."""
_Q_LITERAL: Final = frozenset(string.ascii_letters + string.digits + "-!*+/ ")
"""What the Q encoding writes as itself (the space as ``_``), one column each; the rest is ``=XX`` a byte."""
_Q_ESCAPED: Final = re.compile(r"[^-A-Za-z0-9!*+/ ][^-A-Za-z0-9!*+/ ]*")
"""A run of what the Q encoding escapes, spelt as ``_QP_ESCAPED`` is."""
_DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MINUTE: Final = timedelta(minutes=1)
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
            return None  # left to the reference, which fails on it and says why
        if self._from_line is None or not _verbatim(draft, to, local_now):
            return None
        subject = _subject_value(draft.subject)
        body = encoded_body(draft.body)
        if subject is None or body is None:
            return None
        head = [
            self._from_line,
            f"To: {to.addr_spec}\r\n",
            f"Subject: {subject}\r\n",
            f"Date: {rfc5322_date(local_now)}\r\n",
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
    addr = to.addr_spec  # a property that quotes the local part anew on every read
    return (
        not to.display_name
        and _SIMPLE_ADDR.fullmatch(addr) is not None
        and len("To: ") + len(addr) <= _MAX_LINE
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
    return "\n".join([line.rstrip() for line in lines]).strip("\n") + "\n"


def rfc5322_date(moment: datetime) -> str:
    """``format_datetime(moment)``, written directly for the usual whole-minute offset.

    The stdlib spells the offset with ``strftime("%z")``, which costs more
    than the rest of the date; any other offset (none, seconds) is left to it.
    """
    offset = moment.utcoffset()
    if offset is None or offset % _MINUTE:
        return format_datetime(moment)
    sign = "-" if offset < timedelta(0) else "+"
    hours, minutes = divmod(abs(offset) // _MINUTE, 60)
    return (f"{_DAY_NAMES[moment.weekday()]}, {moment.day:02d} {_MONTH_NAMES[moment.month - 1]} "
            f"{moment.year:04d} {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} "
            f"{sign}{hours:02d}{minutes:02d}")


def _from_line(helpdesk: Helpdesk) -> str | None:
    """The folded From header with its CRLF, as the reference writes it; None if it cannot be built.

    A name the email package refuses is left to the reference, so it fails
    at the first reply exactly as the reference does.
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
    The subjects replies carry are written by ``folded_subject`` or
    ``encoded_words``, which need no check; the rest (a doubled space, a
    control, an ASCII ``=?``) goes through ``Header`` and the registry.
    """
    plain = subject.isascii() and subject.isprintable() and "=?" not in subject
    if plain and len(subject) <= _SUBJECT_ROOM:
        return subject
    if plain:
        folded = folded_subject(subject)
        if folded is not None:
            return folded
    elif not subject.isascii() and subject.isprintable():
        return encoded_words(subject)
    try:
        encoded = encoded_subject(subject)
        if plain:
            survives = encoded.replace("\n", "") == subject
        else:
            survives = str(POLICY.header_fetch_parse("Subject", encoded)) == subject
    except (MessageError, ValueError):
        return None  # the reference raises its TemplateError for it
    return "\r\n".join(encoded.splitlines()) if survives else None


def folded_subject(subject: str) -> str | None:
    """A plain (printable ASCII) Subject folded with CRLF as ``encoded_subject`` folds it.

    ``Header`` adds the words one by one, summing the line again after each,
    and when the line passes 78 columns ("Subject: " included) cuts it after
    the last word but the newest that ends in ``;``, else in ``,``, else
    before the newest word. Words are cut only at their single space, so the
    unfolded value is the subject itself. None for what is left to ``Header``:
    a space that is not single, or a first word too long for the first line.
    """
    words = subject.split(" ")
    width = _SUBJECT_HEAD + len(words[0])
    if "" in words or width > _MAX_LINE:
        return None
    lines: list[str] = []
    line = words[:1]
    for word in words[1:]:
        line.append(word)
        width += 1 + len(word)
        if width > _MAX_LINE:
            cut = _fold_point(line)
            lines.append(" ".join(line[:cut]))
            line = line[cut:]
            width = len(line) + sum(map(len, line))  # a continuation line counts each word's space
    lines.append(" ".join(line))
    return "\r\n ".join(lines)


def encoded_words(subject: str) -> str:
    """A printable non-ASCII Subject as ``encoded_subject`` writes it: RFC 2047 words folded with CRLF.

    ``Header`` encodes the whole subject in Q, or in B when that is strictly
    shorter, and fills each line a character at a time, encoding the line
    again after each one to measure it; here each character's encoded size
    is added up instead. A printable subject has no line break for ``Header``
    to split on, and the words are cut between characters, so the reference's
    reading back yields the subject: it always survives.
    """
    sizes = [len(ch.encode("utf-8")) for ch in subject]
    q_sizes = [1 if ch in _Q_LITERAL else 3 * size for ch, size in zip(subject, sizes, strict=True)]
    use_q = sum(q_sizes) <= _b64_size(sum(sizes))
    words: list[str] = []
    start, used, room = 0, 0, _FIRST_WORD_ROOM
    for index, size in enumerate(q_sizes if use_q else sizes):
        if (used + size if use_q else _b64_size(used + size)) > room:
            words.append(_encoded_word(subject[start:index], use_q))
            start, used, room = index, 0, _NEXT_WORD_ROOM
        used += size
    words.append(_encoded_word(subject[start:], use_q))
    return "\r\n ".join(words)


def _b64_size(octets: int) -> int:
    """Characters of base64 for ``octets`` bytes."""
    return 4 * -(-octets // 3)


def _encoded_word(text: str, use_q: bool) -> str:
    """``text`` as one UTF-8 encoded word, as ``quoprimime`` or ``base64mime.header_encode`` writes it."""
    if use_q:
        return "=?utf-8?q?" + _Q_ESCAPED.sub(_qp_escape, text).replace(" ", "_") + "?="
    return "=?utf-8?b?" + b64encode(text.encode("utf-8")).decode("ascii") + "?="


def _fold_point(words: list[str]) -> int:
    """Where ``Header`` cuts an overlong line of ``words``: the index of the first word of the next line."""
    for mark in _SUBJECT_BREAKS:
        for index in range(len(words) - 1, 0, -1):
            if words[index - 1].endswith(mark):
                return index
    return len(words) - 1


def encoded_body(text: str) -> bytes | None:
    """The quoted-printable body with CRLF line ends, as ``set_content`` and the generator write it.

    That is ``quoprimime.body_encode`` at the policy's width, which escapes
    through a 256-entry table one character at a time; here the escapes are
    made a run at a time, then the long lines cut exactly where it cuts them.
    """
    try:
        escaped = _QP_ESCAPED.sub(_qp_escape, normalise_body(text))
    except UnicodeEncodeError:
        return None  # a lone surrogate: the reference raises its TemplateError for it
    lines = escaped.split("\n")
    return "\r\n".join([line if len(line) <= _MAX_LINE else _soft_broken(line) for line in lines]).encode("ascii")


def _qp_escape(run: re.Match[str]) -> str:
    """``=XX`` (upper-case hex) for each UTF-8 byte of the matched run."""
    return "=" + run[0].encode("utf-8").hex("=").upper()


def _soft_broken(line: str) -> str:
    """An escaped line longer than the width, cut with soft breaks (``=`` CRLF) as ``body_encode`` cuts it.

    Each piece keeps room for the ``=``, and a cut never splits an escape:
    when one straddles the cut, the piece stops at the escape's ``=``, which
    serves as the soft break, and the next piece starts with the whole escape.
    A normalised line never ends in a blank, so the stdlib's special case for
    a trailing blank does not arise.
    """
    pieces = []
    start = 0
    last_start = len(line) - 1 - _MAX_LINE
    while start <= last_start:
        stop = start + _MAX_LINE - 1
        if line[stop - 2] == "=":
            pieces.append(line[start:stop - 1])
            start = stop - 2
        elif line[stop - 1] == "=":
            pieces.append(line[start:stop])
            start = stop - 1
        else:
            pieces.append(line[start:stop] + "=")
            start = stop
    pieces.append(line[start:])
    return "\r\n".join(pieces)
