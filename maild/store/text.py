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
    data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\x00", b"\x80")
    return data.rstrip(b"\n")


def split_message(data: bytes) -> tuple[list[bytes], bytes]:
    """Unfolded header fields and the body of normalized ``data``."""
    head, sep, body = data.partition(b"\n\n")
    if not sep and not _HEADER.match(head.split(b"\n", 1)[0]):
        return [], data
    fields: list[bytes] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b" " + line.strip()
        else:
            fields.append(line)
    return fields, body


def _originator_fields(fields: list[bytes]) -> list[bytes]:
    kept: list[bytes] = []
    for field in fields:
        match = _HEADER.match(field)
        if match and match[1].lower() in ORIGINATOR_HEADERS:
            value = _WS.sub(b" ", match[2]).strip()
            kept.append(match[1].lower() + b":" + value)
    return kept


def header_value(raw: bytes, name: str) -> str:
    """First value of header ``name`` in ``raw`` (decoded latin-1, unfolded), or ""."""
    wanted = name.lower().encode("ascii")
    for field in split_message(normalize_raw(raw))[0]:
        match = _HEADER.match(field)
        if match and match[1].lower() == wanted:
            return _WS.sub(b" ", match[2]).strip().decode("latin-1")
    return ""


def content_hash(raw: bytes) -> str:
    """sha256 hex over the originator headers and the body, normalized."""
    fields, body = split_message(normalize_raw(raw))
    digest = hashlib.sha256()
    for field in _originator_fields(fields):
        digest.update(field + b"\n")
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
    digest = hashlib.sha256()
    digest.update(message_key(header_value(raw, "Message-ID")).encode("utf-8"))
    digest.update(b"\n")
    digest.update(content_hash(raw).encode("ascii"))
    return digest.hexdigest()
