"""Decode one raw message into a ``ParsedMessage``, with bounded work on hostile input.

Mail from the Internet is hostile. The stdlib header decoder is quadratic on some
malformed encoded-words, its recursive MIME parser falls over on a thousand nested
multiparts, and mail-parser decodes (and re-encodes) every attachment. So the work
here is bounded *by construction*, not by a timer (``Limits.parse_timeout`` is not
needed and not used; ``max_message_bytes`` is only reported, since the work is linear
in the size anyway):

* the header block is split here, in one pass over the bytes: each field is cut to
  ``max_header_bytes`` and the block to ``HEADER_BLOCK_FACTOR`` times that;
* MIME structure is walked iteratively over offsets into ``raw`` (no copies, no
  recursion), stopping at ``max_parts`` parts and ``max_depth`` levels; only the
  ``Content-*`` fields of a part are kept, each cut to ``MIME_FIELD_BYTES``;
* attachments are never decoded: their size is estimated from the encoded length;
* a text part is decoded only up to the remaining ``max_body_chars`` budget, and an
  HTML part only when the message has no plain text;
* encoded-words are decoded here, linearly, at most ``MAX_ENCODED_WORDS`` per field,
  and only with real text charsets (never ``unicode-escape``, ``rot13``, ``idna``...).

The well-kept parts of the libraries do the rest: mail-parser's structural address
parser (which also reports the ambiguities the authorizer must not trust) and its
date parser, the stdlib ``email.message.Message`` for MIME parameters (RFC 2231),
and html2text for HTML-only bodies. Every problem becomes a short string in
``defects`` (``code`` or ``code: detail``); ``parse_message`` never raises.
"""

from __future__ import annotations

import binascii
import encodings
import encodings.aliases
import hashlib
import itertools
import logging
import pkgutil
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from types import MappingProxyType

import html2text
from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from maild.records import Address, Attachment, ParsedMessage
from maild.settings import Limits

log = logging.getLogger("maild.parsing")

HEADER_BLOCK_FACTOR = 4
"""The whole top-level header block may hold this many ``max_header_bytes``."""
PART_HEADER_BYTES = 16 * 1024
"""Header block of one MIME part (only Content-* fields matter there)."""
MIME_FIELD_BYTES = 8 * 1024
"""Content-Type/-Disposition cap: the stdlib parameter parser is quadratic."""
MAX_ENCODED_WORDS = 256
"""Encoded-words decoded per header field; the rest stays as written."""
MAX_DEFECTS = 64
MAX_FILENAME_CHARS = 255
MAX_ID_CHARS = 996
MAX_FIELD_NAME = 256
MAX_HTML_NESTING = 8
"""html2text output grows with the square of list/quote nesting."""
BODY_BYTES_PER_CHAR = 6
"""Encoded bytes read per wanted body character (QP-encoded UTF-8: ``=C3=A8``)."""
HTML_SOURCE_FACTOR = 4
"""HTML read per wanted character: style blocks and markup are dropped before html2text."""

_MIME_FIELDS = frozenset({"content-type", "content-transfer-encoding", "content-disposition"})
_BODY_TYPES = frozenset({"text/plain", "text/html"})

# Header block
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")
_FIELD_END = re.compile(rb"\n(?![ \t])")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_DELIMITER_TAIL = re.compile(rb"(--)?[ \t]*(?:\r?\n|\Z)")

# Text hygiene
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
_MIME_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_LANGUAGE_TAG = re.compile(r"[a-z]{1,8}(?:-[a-z0-9]{1,8})*")

# Transfer encodings
_B64_CLEAN = re.compile(rb"[A-Za-z0-9+/\s]*(?:={1,2}\s*)?")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]+")
_B64_PAD = re.compile(rb"=+")
_QP_BROKEN = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*(?:\r?\n|\Z))")

# HTML taming
_HTML_BLOCK = re.compile(r"<!--|<(style|script|head)\b", re.IGNORECASE)
_HTML_CLOSERS = MappingProxyType({
    "style": re.compile(r"</style\s*>", re.IGNORECASE),
    "script": re.compile(r"</script\s*>", re.IGNORECASE),
    "head": re.compile(r"</head\s*>", re.IGNORECASE),
    "": re.compile(r"-->"),
})
_HTML_UNCLOSED_LT = re.compile(r"<(?![^<>]*>)")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_HTML_NESTING = re.compile(r"<(/?)(?:ul|ol|dl|blockquote)\b[^>]*>", re.IGNORECASE)

# Charsets: only real text charsets are ever looked up, so a hostile name can
# neither run a special codec nor grow the codec registry's cache of misses.
_NOT_CHARSETS = frozenset({
    "base64_codec", "bz2_codec", "hex_codec", "quopri_codec", "rot_13", "uu_codec", "zlib_codec",
    "unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "charmap",
    "mbcs", "oem", "aliases",
})
_ALIASES = MappingProxyType(dict(encodings.aliases.aliases))
_MODULES = frozenset(m.name for m in pkgutil.iter_modules(encodings.__path__))
_CHARSET_OVERRIDES = MappingProxyType({
    # A declared Latin-1 is, in practice, Windows-1252 (curly quotes, euro sign).
    "latin_1": "cp1252",
    # 7-bit ASCII is a subset of UTF-8, and mislabelled UTF-8 is common.
    "ascii": "utf-8",
})


# --------------------------------------------------------------------------
# Public API


def parse_message(raw: bytes, limits: Limits) -> ParsedMessage:
    """Decode ``raw`` into a frozen record; never raises (problems go to ``defects``)."""
    try:
        return _parse(raw, limits)
    except Exception as exc:  # hostile input must never stop the daemon
        log.warning("parser fault on a %d-byte message: %s", len(raw), type(exc).__name__, exc_info=True)
        return _fallback(raw, exc)


# --------------------------------------------------------------------------
# Orchestration


def _parse(raw: bytes, limits: Limits) -> ParsedMessage:
    defects = _Defects()
    end = len(raw)
    if end > limits.max_message_bytes:  # noted for the caller; the work stays linear in the size
        defects.add("message-too-large", str(end))
    block = _read_header_block(
        raw, 0, end, field_cap=limits.max_header_bytes,
        block_cap=HEADER_BLOCK_FACTOR * limits.max_header_bytes, keep=None, defects=defects,
    )
    headers = _Headers(block.fields, defects)
    top = _mime_info(block.fields, "text/plain", defects)
    body = _walk(raw, _Node(top, block.body_start, end, 0), limits, defects)
    from_addresses, from_ambiguous = _from(headers, defects)
    return ParsedMessage(
        message_id=_message_id(headers.single("message-id"), raw, defects),
        from_addresses=from_addresses,
        from_ambiguous=from_ambiguous,
        reply_to=_address_list(headers, "reply-to", defects),
        sender=_address_list(headers, "sender", defects),
        to=_address_list(headers, "to", defects),
        cc=_address_list(headers, "cc", defects),
        subject=headers.text("subject") or "",
        date=_header_date(headers.single("date"), "date", defects),
        received_at=_received_at(headers.first("received"), defects),
        auth_results=tuple(" ".join(_clean(v).split()) for v in headers.all("authentication-results")),
        return_path=_return_path(headers.first("return-path")),
        auto_submitted=_keyword(headers.first("auto-submitted")),
        precedence=_keyword(headers.first("precedence")),
        x_autoreply="x-autoreply" in block.fields or "x-autorespond" in block.fields,
        content_type=top.content_type,
        report_type=_keyword(top.report_type) or None,
        in_reply_to=_message_ids(headers.all("in-reply-to")),
        references=_message_ids(headers.all("references")),
        language_hints=_language_hints(headers),
        body_text=body.text,
        body_from_html=body.from_html,
        attachments=body.attachments,
        defects=defects.freeze(),
        size=len(raw),
    )


def _fallback(raw: bytes, exc: Exception) -> ParsedMessage:
    """The record for a message the parser could not handle: nothing trusted in it."""
    return ParsedMessage(
        message_id=_synthetic_id(raw), from_addresses=(), from_ambiguous=True, reply_to=(), sender=(),
        to=(), cc=(), subject="", date=None, received_at=None, auth_results=(), return_path=None,
        auto_submitted=None, precedence=None, x_autoreply=False, content_type="text/plain",
        report_type=None, in_reply_to=(), references=(), language_hints=(), body_text="",
        body_from_html=False, attachments=(), defects=(f"parser-fault: {type(exc).__name__}",), size=len(raw),
    )


class _Defects:
    """Ordered, de-duplicated and bounded: a hostile message cannot grow it without end."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def add(self, code: str, detail: str = "") -> None:
        if len(self._items) >= MAX_DEFECTS:
            self._items.setdefault("defects-truncated", None)
            return
        if detail:
            code = f"{code}: {' '.join(_clean(detail).split())[:80]}"
        self._items.setdefault(code, None)

    def freeze(self) -> tuple[str, ...]:
        return tuple(self._items)


# --------------------------------------------------------------------------
# Header block


@dataclass(frozen=True, slots=True)
class _HeaderBlock:
    fields: dict[str, list[bytes]]
    """Lower-case name -> raw values in order (each without the name and colon)."""
    body_start: int


def _read_header_block(
    raw: bytes, start: int, end: int, *, field_cap: int, block_cap: int,
    keep: frozenset[str] | None, defects: _Defects,
) -> _HeaderBlock:
    """Split the header fields of ``raw[start:end]`` in one pass, cutting oversized ones.

    Like the stdlib, a line that is not a field ends the block and starts the body.
    """
    fields: dict[str, list[bytes]] = {}
    pos, used = start, 0
    if start == 0 and raw.startswith(b"From ", 0, end):  # mbox separator line
        pos = _line_end(raw, 0, end)
    while pos < end:
        if raw.startswith(b"\n", pos, end):
            return _HeaderBlock(fields, pos + 1)
        if raw.startswith(b"\r\n", pos, end):
            return _HeaderBlock(fields, pos + 2)
        name = _FIELD_NAME.match(raw, pos, end)
        if name is None:
            if raw[pos] in b" \t":
                defects.add("header-continuation-first")
                pos = _line_end(raw, pos, end)
                continue
            defects.add("header-line-malformed")
            return _HeaderBlock(fields, pos)
        stop = _FIELD_END.search(raw, pos, end)
        field_end = end if stop is None else stop.end()
        if name.end() - pos > MAX_FIELD_NAME:
            defects.add("header-name-too-long")
            pos = field_end
            continue
        value_end = min(field_end, pos + field_cap)
        key = name.group(1).decode("ascii").lower()
        if used + (value_end - pos) > block_cap:
            defects.add("header-block-truncated")
            blank = _BLANK_LINE.search(raw, pos, end)
            return _HeaderBlock(fields, end if blank is None else blank.end())
        if value_end < field_end:
            defects.add("header-truncated", key)
        if keep is None or key in keep:
            fields.setdefault(key, []).append(raw[name.end():value_end])
        used += value_end - pos
        pos = field_end
    return _HeaderBlock(fields, end)


def _line_end(raw: bytes, pos: int, end: int) -> int:
    newline = raw.find(b"\n", pos, end)
    return end if newline < 0 else newline + 1


class _Headers:
    """Decodes only the fields that are asked for, once each."""

    __slots__ = ("_defects", "_fields")

    def __init__(self, fields: dict[str, list[bytes]], defects: _Defects) -> None:
        self._fields = fields
        self._defects = defects

    def all(self, name: str) -> list[str]:
        """Unfolded values (8-bit bytes that are not UTF-8 become U+FFFD), in order."""
        return [_unfold(self._str(name, value)) for value in self._fields.get(name, ())]

    def first(self, name: str) -> str | None:
        values = self._fields.get(name)
        return None if not values else _unfold(self._str(name, values[0]))

    def count(self, name: str) -> int:
        return len(self._fields.get(name, ()))

    def single(self, name: str) -> str | None:
        """First value of a field that should appear once; a repeat is noted."""
        if self.count(name) > 1:
            self._defects.add("header-repeated", name)
        return self.first(name)

    def text(self, name: str) -> str | None:
        """First value, RFC 2047 decoded, safe to show and to store."""
        value = self.single(name)
        return None if value is None else _clean(_decode_words(value, self._defects)).strip()

    def _str(self, name: str, value: bytes) -> str:
        text, valid = _header_str(value)
        if not valid:
            self._defects.add("header-8bit-invalid", name)
        return text


def _header_str(value: bytes) -> tuple[str, bool]:
    """Header bytes as text: RFC 6532 says raw 8-bit is UTF-8; anything else is U+FFFD."""
    if value.isascii():
        return value.decode("ascii"), True
    try:
        return value.decode("utf-8"), True
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace"), False


def _unfold(value: str) -> str:
    return value.replace("\r\n", "").replace("\n", "").replace("\r", " ")


def _clean(text: str) -> str:
    """No control characters (header injection) and no lone surrogates (PostgreSQL)."""
    text = _CONTROL.sub(" ", text)
    return _SURROGATE.sub("\ufffd", text) if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


# --------------------------------------------------------------------------
# Encoded-words (RFC 2047) and charsets


def _decode_words(value: str, defects: _Defects) -> str:
    """Decode encoded-words in one linear pass; adjacent words share their bytes.

    Unlike ``email.header.decode_header`` this is linear on malformed input,
    never drops an undecodable word, and never runs a non-text codec.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = _PendingWord()
    pos = 0
    for count, match in enumerate(_ENCODED_WORD.finditer(value)):
        if count >= MAX_ENCODED_WORDS:
            defects.add("encoded-words-capped")
            break
        gap = value[pos:match.start()]
        charset = match.group(1).split("*", 1)[0].lower()
        adjacent = pending.data is not None and not gap.strip(" \t")
        if not adjacent or charset != pending.charset:
            out.append(pending.flush(defects))
        if not adjacent:
            out.append(gap)
        pending.add(charset, _word_bytes(match.group(2), match.group(3), defects))
        pos = match.end()
    out.append(pending.flush(defects))
    out.append(value[pos:])
    return "".join(out)


@dataclass(slots=True)
class _PendingWord:
    """Bytes of adjacent encoded-words in one charset: a character may span two words."""

    charset: str = ""
    data: bytearray | None = None

    def add(self, charset: str, data: bytes) -> None:
        if self.data is None:
            self.charset, self.data = charset, bytearray()
        self.data += data

    def flush(self, defects: _Defects) -> str:
        if self.data is None:
            return ""
        text = _decode_bytes(bytes(self.data), self.charset, defects, where="encoded-word")
        self.data = None
        return text


def _word_bytes(encoding: str, payload: str, defects: _Defects) -> bytes:
    data = payload.encode("utf-8", "surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    return _base64(data, defects)


def _base64(data: bytes, defects: _Defects) -> bytes:
    """Strict decode when clean; otherwise the best effort a mail client would make."""
    if _B64_CLEAN.fullmatch(data):
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            pass
    defects.add("base64-invalid")
    out = bytearray()
    for chunk in _B64_PAD.split(_B64_JUNK.sub(b"", data)):
        usable = len(chunk) - (1 if len(chunk) % 4 == 1 else 0)
        try:
            out += binascii.a2b_base64(chunk[:usable] + b"=" * (-usable % 4))
        except binascii.Error:
            continue
    return bytes(out)


def _decode_bytes(data: bytes, charset: str | None, defects: _Defects, *, where: str) -> str:
    """Decode with the declared charset when it is a real one; U+FFFD for bad bytes."""
    codec = _codec(charset)
    label = (charset or "utf-8").strip().lower()
    if codec is None:
        defects.add(f"{where}-charset-unknown", label)
        codec = label = "utf-8"
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        defects.add(f"{where}-undecodable", label)
    except (LookupError, UnicodeError, ValueError, TypeError):
        defects.add(f"{where}-charset-unknown", codec)
        codec = "utf-8"
    try:
        return data.decode(codec, "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return data.decode("utf-8", "replace")


def _codec(charset: str | None) -> str | None:
    """Python codec for a MIME charset; ``"utf-8"`` for none; None when not a real charset."""
    if not charset:
        return "utf-8"
    name = encodings.normalize_encoding(charset.strip().strip("\"'").lower()[:64])
    if name.startswith("x_") and name not in _ALIASES and name not in _MODULES:
        name = name[2:]
    name = _ALIASES.get(name, name)
    if name not in _MODULES or name in _NOT_CHARSETS:
        return None
    return _CHARSET_OVERRIDES.get(name, name)


# --------------------------------------------------------------------------
# Simple header fields


def _synthetic_id(raw: bytes) -> str:
    return f"<{hashlib.sha256(raw).hexdigest()}@maild.invalid>"


def _message_id(value: str | None, raw: bytes, defects: _Defects) -> str:
    """The first ``<...>`` of Message-ID, or a stable one derived from the bytes."""
    if value is None or not value.strip():
        defects.add("message-id-missing")
        return _synthetic_id(raw)
    match = _ANGLE_ID.search(value)
    ident = _id_text(match.group(1) if match else value)
    if not ident or "<" in ident or ">" in ident:
        defects.add("message-id-invalid")
        return _synthetic_id(raw)
    return f"<{ident}>"


def _id_text(text: str) -> str:
    ident = "".join(_clean(text).split())
    return ident if len(ident) <= MAX_ID_CHARS else ""


def _message_ids(values: list[str]) -> tuple[str, ...]:
    ids = (_id_text(m.group(1)) for value in values for m in _ANGLE_ID.finditer(value))
    return tuple(f"<{i}>" for i in ids if i)


def _return_path(value: str | None) -> str | None:
    if value is None:
        return None
    match = _ANGLE_ID.search(value)
    return "".join(_clean(match.group(1) if match else value).split())


def _keyword(value: str | None) -> str | None:
    return None if value is None else " ".join(_clean(value).split()).lower()


def _language_hints(headers: _Headers) -> tuple[str, ...]:
    """Content-Language first (it describes this message), then Accept-Language."""
    hints: dict[str, None] = {}
    for name in ("content-language", "accept-language"):
        for value in headers.all(name):
            for item in value.split(",")[:32]:
                tag = item.split(";", 1)[0].strip().lower()
                if _LANGUAGE_TAG.fullmatch(tag):
                    hints.setdefault(tag, None)
    return tuple(hints)[:16]


def _header_date(value: str | None, name: str, defects: _Defects) -> datetime | None:
    """An aware UTC datetime, or None (with a defect) for anything unreadable or absurd."""
    if value is None:
        defects.add(f"{name}-missing")
        return None
    if len(value) > 256:
        defects.add(f"{name}-invalid", "too long")
        return None
    result = parse_mail_date(value)
    parsed: datetime | None = result.value
    if parsed is None:
        defects.add(f"{name}-invalid", ",".join(result.reasons))
        return None
    return parsed.astimezone(UTC)


def _received_at(value: str | None, defects: _Defects) -> datetime | None:
    """Date of the topmost Received field: the text after its last ';'."""
    if value is None:
        return None
    _, semicolon, stamp = value.rpartition(";")
    if not semicolon:
        defects.add("received-date-missing")
        return None
    return _header_date(stamp.strip(), "received-date", defects)


# --------------------------------------------------------------------------
# Addresses


def _address_list(headers: _Headers, name: str, defects: _Defects) -> tuple[Address, ...]:
    addresses: list[Address] = []
    for value in headers.all(name):
        found, reasons = _parse_addresses(value, defects)
        addresses.extend(found)
        for reason in reasons:
            defects.add(f"{name}-address-invalid", reason)
    return tuple(addresses)


def _parse_addresses(value: str, defects: _Defects) -> tuple[list[Address], set[str]]:
    """mail-parser's structural reading, plus the reasons it could not be sure."""
    diagnostics: list[dict[str, object]] = []
    try:
        pairs: list[tuple[str, str]] = get_addresses(value, defects=diagnostics)
    except Exception as exc:  # a library fault on hostile input is a defect
        return [], {f"parser-fault {type(exc).__name__}"}
    reasons = {str(d.get("reason", "")) for d in diagnostics}
    found = [_address(name, addr, defects) for name, addr in pairs if addr]
    return found, reasons


def _address(name: str, addr: str, defects: _Defects) -> Address:
    addr = _clean(addr).strip()
    local, at, domain = addr.rpartition("@")
    display = " ".join(_clean(_decode_words(name, defects)).split())
    return Address(name=display, addr=f"{local}@{domain.lower()}" if at else addr)


def _from(headers: _Headers, defects: _Defects) -> tuple[tuple[Address, ...], bool]:
    """Every From address, and whether two readings of the field could disagree."""
    values = headers.all("from")
    if not values:
        defects.add("from-missing")
        return (), False
    reasons: set[str] = {"multiple-from-fields"} if len(values) > 1 else set()
    addresses: list[Address] = []
    for value in values:
        found, parse_reasons = _parse_addresses(value, defects)
        addresses.extend(found)
        reasons |= parse_reasons | _lexical_ambiguity(value)
        if not found:
            reasons.add("no-address")
    if any(at in a.name for a in addresses for at in ("@", "\uff20", "\ufe6b")):
        reasons.add("address-in-display-name")
    reasons.discard("")
    for reason in sorted(reasons):
        defects.add("from-ambiguous", reason)
    return tuple(addresses), bool(reasons)


def _lexical_ambiguity(value: str) -> set[str]:
    """Comments, groups, unbalanced quotes or brackets, control characters.

    Readers disagree on all of these (which comment is the name, whether a group
    is one sender), so the authorizer must not rely on any single reading.
    """
    outer, reasons = _outside_quotes_and_comments(value)
    if ":" in outer or ";" in outer:
        reasons.add("group")
    depth = 0
    for ch in outer:
        depth += (ch == "<") - (ch == ">")
        if depth not in (0, 1):
            break
    if depth:
        reasons.add("unbalanced")
    if _CONTROL.search(value.replace("\t", " ")):
        reasons.add("control-character")
    if "\ufffd" in value:
        reasons.add("invalid-utf8")
    return reasons


def _outside_quotes_and_comments(value: str) -> tuple[str, set[str]]:
    """The text outside quoted strings and (nested) comments, and what was seen."""
    reasons: set[str] = set()
    outer: list[str] = []
    quoted = escaped = False
    comment = 0
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or comment):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == "(":
            comment += 1
            reasons.add("comment")
        elif comment:
            comment -= ch == ")"
        elif ch == ")":
            reasons.add("unbalanced")
        elif ch == '"':
            quoted = True
        else:
            outer.append(ch)
    if quoted or comment or escaped:
        reasons.add("unbalanced")
    return "".join(outer), reasons


# --------------------------------------------------------------------------
# MIME structure


@dataclass(frozen=True, slots=True)
class _Mime:
    """What the Content-* fields of one part say."""

    content_type: str = "text/plain"
    charset: str | None = None
    transfer_encoding: str = ""
    disposition: str | None = None
    filename: str = ""
    boundary: str | None = None
    report_type: str | None = None

    @property
    def maintype(self) -> str:
        return self.content_type.partition("/")[0]


@dataclass(frozen=True, slots=True)
class _Node:
    mime: _Mime
    start: int
    end: int
    depth: int


def _mime_info(fields: dict[str, list[bytes]], default_type: str, defects: _Defects) -> _Mime:
    """Read Content-* fields through the stdlib ``Message`` (RFC 2231 parameters)."""
    if not any(name in fields for name in _MIME_FIELDS):
        return _Mime(content_type=default_type)
    view = Message()
    view.set_default_type(default_type)
    for name in _MIME_FIELDS:
        values = fields.get(name)
        if values:
            view.set_raw(name, _unfold(_header_str(values[0][:MIME_FIELD_BYTES])[0]))
    try:
        params = _params(view, "content-type")
        disposition = _params(view, "content-disposition")
        return _Mime(
            content_type=_content_type(view, default_type, defects),
            charset=_param(params, "charset", defects),
            transfer_encoding=_transfer_encoding(view.get("content-transfer-encoding")),
            disposition=view.get_content_disposition(),
            filename=_filename(
                _param(disposition, "filename", defects) or _param(params, "name", defects), defects
            ),
            boundary=_param(params, "boundary", defects),
            report_type=_param(params, "report-type", defects),
        )
    except (ValueError, LookupError, UnicodeError, IndexError, TypeError, AttributeError) as exc:
        defects.add("mime-header-invalid", type(exc).__name__)
        return _Mime(content_type=default_type)


def _content_type(view: Message, default_type: str, defects: _Defects) -> str:
    """The stdlib's reading, but a malformed type is the default one (RFC 2045 5.2)."""
    content_type = view.get_content_type()
    if _MIME_TYPE.fullmatch(content_type):
        return content_type
    defects.add("content-type-invalid")
    return default_type


def _params(view: Message, header: str) -> dict[str, object]:
    """Parameters of one field, parsed once; the first of a repeated name wins."""
    params: dict[str, object] = {}
    for key, value in view.get_params(header=header) or ():
        params.setdefault(str(key).lower(), value)
    return params


def _param(params: dict[str, object], name: str, defects: _Defects) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, latin-1 text)
        charset, _, text = value
        data = str(text).encode("latin-1", "replace")
        return _decode_bytes(data, str(charset) if charset else None, defects, where="parameter")
    return str(value)


def _transfer_encoding(value: object) -> str:
    words = str(value or "").split()
    return words[0].lower() if words else ""


def _filename(name: str | None, defects: _Defects) -> str:
    """Decoded (RFC 2231 or, as many clients send it, RFC 2047), clean and bounded."""
    if not name:
        return ""
    text = " ".join(_clean(_decode_words(name, defects)).split())
    if len(text) > MAX_FILENAME_CHARS:
        defects.add("filename-truncated")
    return text[:MAX_FILENAME_CHARS]


@dataclass(frozen=True, slots=True)
class _Body:
    text: str
    from_html: bool
    attachments: tuple[Attachment, ...]


@dataclass(slots=True)
class _Collector:
    """State of one walk: what was found, and what is left of the budgets."""

    limits: Limits
    defects: _Defects
    parts: int = 0
    plain_chars: int = 0
    plain: list[str] = field(default_factory=list)
    html_nodes: list[_Node] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)


def _walk(raw: bytes, top: _Node, limits: Limits, defects: _Defects) -> _Body:
    """Visit the parts depth-first, in document order, without recursion."""
    found = _Collector(limits, defects)
    stack = [top]
    while stack:
        node = stack.pop()
        mime = node.mime
        if mime.maintype == "multipart":
            if node.depth >= limits.max_depth:
                defects.add("nesting-truncated")
                _attachment(raw, node, found)
            elif not mime.boundary or len(mime.boundary) > 200:
                defects.add("multipart-without-boundary")
                _text_leaf(raw, node, found)
            else:
                stack.extend(reversed(_children(raw, node, mime.boundary, found)))
        elif _is_body(mime):
            _text_leaf(raw, node, found)
        else:
            _attachment(raw, node, found)
    text, from_html = _body_text(raw, found)
    return _Body(text, from_html, tuple(found.attachments))


def _is_body(mime: _Mime) -> bool:
    if mime.content_type not in _BODY_TYPES or mime.disposition == "attachment":
        return False
    return not mime.filename or mime.disposition == "inline"


def _children(raw: bytes, node: _Node, boundary: str, found: _Collector) -> list[_Node]:
    """The parts of one multipart, as far as the part budget reaches."""
    budget = found.limits.max_parts - found.parts
    spans = _split_multipart(raw, node, boundary, budget + 1, found.defects)
    if spans is None:
        _text_leaf(raw, node, found)
        return []
    if len(spans) > budget:
        found.defects.add("parts-truncated", str(found.limits.max_parts))
        spans = spans[:max(budget, 0)]
    found.parts += len(spans)
    default = "message/rfc822" if node.mime.content_type == "multipart/digest" else "text/plain"
    children = []
    for start, end in spans:
        block = _read_header_block(
            raw, start, end, field_cap=MIME_FIELD_BYTES, block_cap=PART_HEADER_BYTES,
            keep=_MIME_FIELDS, defects=found.defects,
        )
        mime = _mime_info(block.fields, default, found.defects)
        children.append(_Node(mime, block.body_start, end, node.depth + 1))
    return children


def _split_multipart(
    raw: bytes, node: _Node, boundary: str, limit: int, defects: _Defects
) -> list[tuple[int, int]] | None:
    """Spans of the body parts between boundary lines; None when there is none at all.

    The delimiter is found with ``bytes.find`` over offsets, so a 25 MB part is
    scanned once at C speed and never copied.
    """
    delimiter = b"--" + boundary.encode("utf-8", "replace")
    needle = b"\n" + delimiter
    lines: list[tuple[int, int]] = []
    pos, end, closed = node.start, node.end, False
    while len(lines) <= limit:
        if pos == node.start and raw.startswith(delimiter, pos, end):
            at = pos
        else:
            found = raw.find(needle, max(pos - 1, node.start), end)
            if found < 0:
                break
            at = found + 1
        tail = _DELIMITER_TAIL.match(raw, at + len(delimiter), end)
        pos = at + len(delimiter)
        if tail is None:
            continue
        lines.append((at, tail.end()))
        pos = tail.end()
        if tail.group(1):
            closed = True
            break
    if not lines:
        defects.add("multipart-start-missing")
        return None
    if not closed and len(lines) <= limit:
        defects.add("multipart-close-missing")
        lines.append((end, end))
    pairs = itertools.pairwise(lines)
    return [(a_end, _before_newline(raw, b_start, a_end)) for (_, a_end), (b_start, _) in pairs]


def _before_newline(raw: bytes, at: int, floor: int) -> int:
    """The CRLF before a delimiter line belongs to the delimiter (RFC 2046)."""
    if at > floor and raw[at - 1:at] == b"\n":
        at -= 1
        if at > floor and raw[at - 1:at] == b"\r":
            at -= 1
    return at


def _attachment(raw: bytes, node: _Node, found: _Collector) -> None:
    mime = node.mime
    size = _estimated_size(raw, node.start, node.end, mime.transfer_encoding)
    found.attachments.append(Attachment(filename=mime.filename, content_type=mime.content_type, size=size))


def _estimated_size(raw: bytes, start: int, end: int, encoding: str) -> int:
    """Decoded size from the encoded length alone: no attachment is ever decoded."""
    length = max(end - start, 0)
    if encoding == "base64":
        spaces = sum(raw.count(c, start, end) for c in (b"\n", b"\r", b" ", b"\t"))
        padding = raw.count(b"=", max(start, end - 8), end)
        return max((length - spaces) * 3 // 4 - padding, 0)
    if encoding == "quoted-printable":
        return max(length - 2 * raw.count(b"=", start, end), 0)
    return length


def _text_leaf(raw: bytes, node: _Node, found: _Collector) -> None:
    if node.mime.content_type == "text/html":
        found.html_nodes.append(node)  # decoded only if there is no plain text
        return
    remaining = found.limits.max_body_chars - found.plain_chars
    if remaining <= 0:
        found.defects.add("body-truncated")
        return
    text = _decode_leaf(raw, node, remaining, found.defects)
    found.plain.append(text)
    found.plain_chars += len(text)


def _decode_leaf(raw: bytes, node: _Node, chars: int, defects: _Defects) -> str:
    """Transfer- and charset-decode at most about ``chars`` characters of one part."""
    end = node.end
    cap = chars * BODY_BYTES_PER_CHAR + 8
    if end - node.start > cap:
        defects.add("body-truncated")
        cut = raw.rfind(b"\n", node.start, node.start + cap)
        end = node.start + cap if cut <= node.start else cut + 1
    data = _transfer_decode(raw[node.start:end], node.mime.transfer_encoding, defects)
    text = _decode_bytes(data, node.mime.charset, defects, where="body")
    return _body_clean(text)[:chars]


def _transfer_decode(data: bytes, encoding: str, defects: _Defects) -> bytes:
    if encoding == "base64":
        return _base64(data, defects)
    if encoding == "quoted-printable":
        if _QP_BROKEN.search(data):
            defects.add("quoted-printable-invalid")
        return binascii.a2b_qp(data)
    if encoding not in ("", "7bit", "8bit", "binary"):
        defects.add("transfer-encoding-unknown", encoding)
    return data


def _body_clean(text: str) -> str:
    """One newline convention, no NUL, no BOM, no lone surrogates."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    if _has_surrogate(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text.lstrip("\ufeff")


def _body_text(raw: bytes, found: _Collector) -> tuple[str, bool]:
    """Plain text when there is any; otherwise the HTML parts, made readable."""
    limit = found.limits.max_body_chars
    plain = "\n\n".join(t.strip("\n") for t in found.plain if t.strip())
    if plain or not found.html_nodes:
        return plain[:limit], False
    texts: list[str] = []
    budget = limit
    for node in found.html_nodes:
        if budget <= 0:
            found.defects.add("body-truncated")
            break
        html = _decode_leaf(raw, node, budget * HTML_SOURCE_FACTOR, found.defects)
        text = _html_to_text(html, budget, found.defects).strip("\n")
        texts.append(text)
        budget -= len(text)
    return "\n\n".join(t for t in texts if t.strip())[:limit], True


# --------------------------------------------------------------------------
# HTML


def _html_to_text(html: str, limit: int, defects: _Defects) -> str:
    """html2text on HTML first tamed so that its work and output stay linear."""
    html = _tame_html(html, limit)
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_links = True
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.unicode_snob = True
    try:
        text = converter.handle(html)
    except Exception as exc:  # html2text/HTMLParser fault on hostile markup
        defects.add("html-conversion-failed", type(exc).__name__)
        text = re.sub(r"<[^<>]*>", " ", html)
    return _TRAILING_SPACE.sub("\n", _body_clean(text))


def _tame_html(html: str, limit: int) -> str:
    """Drop what is never shown, close the door on the parser's quadratic cases.

    Comments, style, script and head go (an unclosed one swallows the rest, as in a
    browser); a ``<`` that opens no complete tag becomes text; list and quote
    nesting is capped.
    """
    html = _drop_hidden(html)[:limit]
    html = _HTML_UNCLOSED_LT.sub("&lt;", html)
    return _cap_nesting(html)


def _drop_hidden(html: str) -> str:
    """Linear: once a closer is known to be absent, it is never searched for again."""
    out: list[str] = []
    pos = 0
    unclosed_head = False
    while (opener := _HTML_BLOCK.search(html, pos)) is not None:
        out.append(html[pos:opener.start()])
        tag = (opener.group(1) or "").lower()
        closer = None if tag == "head" and unclosed_head else _HTML_CLOSERS[tag].search(html, opener.end())
        if closer is None:
            if tag == "head":  # an unclosed head often wraps the whole message: show it
                unclosed_head = True
                pos = opener.end()
                continue
            return "".join(out)
        pos = closer.end()
    out.append(html[pos:])
    return "".join(out)


def _cap_nesting(html: str) -> str:
    depth = dropped = 0

    def keep(match: re.Match[str]) -> str:
        nonlocal depth, dropped
        if match.group(1):
            if dropped:
                dropped -= 1
                return ""
            depth = max(depth - 1, 0)
            return match.group(0)
        if depth >= MAX_HTML_NESTING:
            dropped += 1
            return ""
        depth += 1
        return match.group(0)

    return _HTML_NESTING.sub(keep, html)
