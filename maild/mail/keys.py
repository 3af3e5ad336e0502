"""Pure helpers for the keys the store matches on: dedupe keys and Message-IDs.

The dedupe key must be equal for every copy of one message that can reach the
inbox again: the same bytes after a UIDVALIDITY change, a copy an operator
moved back to INBOX (Dovecot hands NUL back as 0x80 and bare CR/LF as CRLF),
or the same message delivered twice through two aliases (the MTA prepends its
own trace headers to each copy). So the content hash covers the body and the
headers the author wrote, never the trace headers a server adds on the way in.
It must differ for a different message that reuses a Message-ID, hence the
body and the originator headers are part of it.
"""

from __future__ import annotations

import hashlib
import re

# Headers set by the author's client, kept in the content hash. Everything else
# (Received, Return-Path, Delivered-To, Authentication-Results, X-*, ...) may be
# added or rewritten by the servers on the way and is left out.
ORIGINATOR_HEADERS = frozenset({
    b"from", b"sender", b"reply-to", b"to", b"cc", b"subject", b"date", b"message-id",
    b"in-reply-to", b"references", b"mime-version", b"content-type", b"content-transfer-encoding",
})

_WS = re.compile(rb"[ \t\r\n]+")
_HEADER = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$", re.DOTALL)


def normalize_raw(raw: bytes) -> bytes:
    """Undo what mail servers do to bytes on the way: line endings and NUL.

    CRLF and bare CR become LF; NUL becomes 0x80 (what Dovecot writes for it);
    trailing blank lines go (an IMAP copy may add a final line ending).
    """
    data = _undo_transport(raw)
    return data[:_content_end(data)]


def split_message(data: bytes) -> tuple[list[bytes], bytes]:
    """Unfolded header fields and the body of normalized ``data``."""
    fields, body = _split(data, len(data))
    return fields, bytes(body)


def header_value(raw: bytes, name: str) -> str:
    """First value of header ``name`` in ``raw`` (decoded latin-1, unfolded), or ""."""
    return _field_value(_parts(raw)[0], name.lower().encode("ascii"))


def content_hash(raw: bytes) -> str:
    """sha256 hex over the originator headers and the body, normalized."""
    fields, body = _parts(raw)
    return _content_hash(_originator_fields(fields), body)


# The helpers below read a message through views of ONE normalized copy of it: computing
# its key costs one more copy of the message, not one more for the stripped text and another
# for its body.

_TAIL = 4096


def _undo_transport(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\x00", b"\x80")


def _content_end(data: bytes) -> int:
    """``len(data.rstrip(b"\\n"))`` without copying ``data`` (unless it ends in 4 KB of newlines)."""
    tail = data[-_TAIL:]
    kept = tail.rstrip(b"\n")
    if kept or len(tail) == len(data):
        return len(data) - len(tail) + len(kept)
    return len(data.rstrip(b"\n"))


def _parts(raw: bytes) -> tuple[list[bytes], memoryview]:
    data = _undo_transport(raw)
    return _split(data, _content_end(data))


def _split(data: bytes, end: int) -> tuple[list[bytes], memoryview]:
    """Header fields and a view of the body of normalized ``data[:end]``."""
    blank = data.find(b"\n\n", 0, end)
    if blank >= 0:
        return _unfolded(data[:blank]), memoryview(data)[blank + 2:end]
    newline = data.find(b"\n", 0, end)
    if not _HEADER.match(data[:newline if newline >= 0 else end]):
        return [], memoryview(data)[:end]
    return _unfolded(data[:end]), memoryview(b"")


def _unfolded(head: bytes) -> list[bytes]:
    fields: list[bytes] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b" " + line.strip()
        else:
            fields.append(line)
    return fields


def _field_value(fields: list[bytes], wanted: bytes) -> str:
    """The first value of the field named ``wanted`` (lower case, a header name), or ""."""
    for field in fields:
        name, value = _named(field)
        if name == wanted:
            return _collapsed(value).decode("latin-1")
    return ""


def _originator_fields(fields: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Name (lower case) and value (blanks collapsed) of each originator field, in order."""
    kept: list[tuple[bytes, bytes]] = []
    for field in fields:
        name, value = _named(field)
        if name in ORIGINATOR_HEADERS:
            kept.append((name, _collapsed(value)))
    return kept


def _named(field: bytes) -> tuple[bytes, bytes]:
    """The name (lower case, blanks before the colon dropped) and raw value of a header field.

    Every message's key reads its fields, so a field costs a find and a slice, not a match of
    ``_HEADER``. For a name made of the characters a header name may hold, as every name looked
    for is, it is the name ``_HEADER`` reads: the text before the first colon, less trailing
    blanks, equals it only when ``_HEADER`` matches the field with that name.
    """
    colon = field.find(b":")
    if colon <= 0:
        return b"", b""
    return field[:colon].rstrip(b" \t").lower(), field[colon + 1:]


def _collapsed(value: bytes) -> bytes:
    """``value`` stripped, each run of blanks in it made one space.

    Without the regular expression when every blank is a single space already, the rule for
    the originator fields of every message: a field holds no CR or LF once normalized and
    unfolded, so only a tab or two spaces in a row make a run that is not one space.
    """
    if b"\t" in value or b"  " in value:
        return _WS.sub(b" ", value).strip()
    return value.strip()


def _content_hash(originator: list[tuple[bytes, bytes]], body: memoryview) -> str:
    digest = hashlib.sha256()
    for name, value in originator:
        digest.update(name + b":" + value + b"\n")
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def message_key(message_id: str) -> str:
    """Normalized Message-ID: no angle brackets, no blanks, lower case.

    Lower case because clients and gateways do change the case of the domain;
    two messages that differ only in the case of a local part are too unlikely
    to matter for threading.
    """
    value = "".join(message_id.split())
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.lower()


def dedupe_key(raw: bytes) -> str:
    """The key under which a received message is recorded exactly once.

    sha256 hex of the normalized Message-ID header found in ``raw`` and of the
    content hash. Computed from the raw bytes alone, so the daemon can skip a
    known message before parsing it, and every caller gets the same key.
    """
    fields, body = _parts(raw)  # once: the message is normalized (copied) once, not twice
    originator = _originator_fields(fields)  # one scan: the Message-ID is an originator field
    message_id = next((value for name, value in originator if name == b"message-id"), b"")
    digest = hashlib.sha256()
    digest.update(message_key(message_id.decode("latin-1")).encode("utf-8"))
    digest.update(b"\n")
    digest.update(_content_hash(originator, body).encode("ascii"))
    return digest.hexdigest()
