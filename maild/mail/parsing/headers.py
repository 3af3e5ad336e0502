"""The header block, split in one bounded pass, and the simple fields read from it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mailparser.dates import parse_mail_date

from maild.mail.parsing.defects import Defects, clean_header
from maild.mail.parsing.encoded_words import decode_words

MAX_ID_CHARS = 996
MAX_FIELD_NAME = 256
_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")
_FIELD_END = re.compile(rb"\n(?![ \t])")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_LANGUAGE_TAG = re.compile(r"[a-z]{1,8}(?:-[a-z0-9]{1,8})*")
SCREENED_FIELD_NAMES = (
    "List-Id", "List-Unsubscribe", "List-Post", "List-Help", "List-Subscribe", "List-Owner", "List-Archive",
    "Mailing-List", "X-Failed-Recipients", "X-Auto-Response-Suppress",
    "X-Spam-Flag", "X-Spam-Status", "X-Spam", "X-MS-Exchange-Organization-SCL", "X-Forefront-Antispam-Report",
    "Date",
)
"""The header fields kept for the screening data's ``header:<name>`` rules: a fixed list, so a hostile
message cannot make the record carry more. Spelled as the programs that write them do, for reasons."""
SCREENED_FIELDS = tuple(name.lower() for name in SCREENED_FIELD_NAMES)
SCREENED_VALUE_CHARS = 256


@dataclass(frozen=True, slots=True)
class _HeaderBlock:
    fields: dict[str, list[bytes]]
    """Lower-case name -> raw values in order (each without the name and colon)."""
    body_start: int


def read_header_block(
    raw: bytes, start: int, end: int, *, field_cap: int, block_cap: int,
    keep: frozenset[str] | None, defects: Defects,
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


class Headers:
    """Decodes only the fields that are asked for, once each."""

    __slots__ = ("_defects", "_fields")

    def __init__(self, fields: dict[str, list[bytes]], defects: Defects) -> None:
        self._fields = fields
        self._defects = defects

    def all(self, name: str) -> list[str]:
        """Unfolded values (8-bit bytes that are not UTF-8 become U+FFFD), in order."""
        return [unfold(self._str(name, value)) for value in self._fields.get(name, ())]

    def first(self, name: str) -> str | None:
        values = self._fields.get(name)
        return None if not values else unfold(self._str(name, values[0]))

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
        return None if value is None else clean_header(decode_words(value, self._defects)).strip()

    def _str(self, name: str, value: bytes) -> str:
        text, valid = header_str(value)
        if not valid:
            self._defects.add("header-8bit-invalid", name)
        return text


def header_str(value: bytes) -> tuple[str, bool]:
    """Header bytes as text: RFC 6532 says raw 8-bit is UTF-8; anything else is U+FFFD."""
    if value.isascii():
        return value.decode("ascii"), True
    try:
        return value.decode("utf-8"), True
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace"), False


def unfold(value: str) -> str:
    return value.replace("\r\n", "").replace("\n", "").replace("\r", " ")


def synthetic_id(raw: bytes) -> str:
    return f"<{hashlib.sha256(raw).hexdigest()}@maild.invalid>"


def read_message_id(value: str | None, raw: bytes, defects: Defects) -> str:
    """The first ``<...>`` of Message-ID, or a stable one derived from the bytes."""
    if value is None or not value.strip():
        defects.add("message-id-missing")
        return synthetic_id(raw)
    match = _ANGLE_ID.search(value)
    ident = _id_text(match.group(1) if match else value)
    if not ident or "<" in ident or ">" in ident:
        defects.add("message-id-invalid")
        return synthetic_id(raw)
    return f"<{ident}>"


def _id_text(text: str) -> str:
    ident = "".join(clean_header(text).split())
    return ident if len(ident) <= MAX_ID_CHARS else ""


def read_message_ids(values: list[str]) -> tuple[str, ...]:
    ids = (_id_text(m.group(1)) for value in values for m in _ANGLE_ID.finditer(value))
    return tuple(f"<{i}>" for i in ids if i)


def read_return_path(value: str | None) -> str | None:
    if value is None:
        return None
    match = _ANGLE_ID.search(value)
    return "".join(clean_header(match.group(1) if match else value).split())


def read_keyword(value: str | None) -> str | None:
    return None if value is None else " ".join(clean_header(value).split()).lower()


def read_screened_fields(headers: Headers) -> tuple[tuple[str, str], ...]:
    """The first value of each field in ``SCREENED_FIELDS`` the message has, decoded and cut."""
    found = ((name, headers.first(name)) for name in SCREENED_FIELDS)
    return tuple((name, " ".join(clean_header(value).split())[:SCREENED_VALUE_CHARS])
                 for name, value in found if value is not None)


def read_language_hints(headers: Headers) -> tuple[str, ...]:
    """Content-Language first (it describes this message), then Accept-Language."""
    hints: dict[str, None] = {}
    for name in ("content-language", "accept-language"):
        for value in headers.all(name):
            for item in value.split(",")[:32]:
                tag = item.split(";", 1)[0].strip().lower()
                if _LANGUAGE_TAG.fullmatch(tag):
                    hints.setdefault(tag, None)
    return tuple(hints)[:16]


def read_header_date(value: str | None, name: str, defects: Defects) -> datetime | None:
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


_RECEIVED_BY = re.compile(r"(?:^|[\s)])by\s+\[?([A-Za-z0-9.:-]+)", re.IGNORECASE)


def read_received_by(value: str | None) -> str:
    """The ``by`` host of a Received field, lower case: the server that added it ("" when there is none)."""
    if value is None:
        return ""
    found = _RECEIVED_BY.search(value.rpartition(";")[0] or value)
    return found.group(1).rstrip(".").lower() if found else ""


def read_received_at(value: str | None, defects: Defects) -> datetime | None:
    """Date of the topmost Received field: the text after its last ';'."""
    if value is None:
        return None
    _, semicolon, stamp = value.rpartition(";")
    if not semicolon:
        defects.add("received-date-missing")
        return None
    return read_header_date(stamp.strip(), "received-date", defects)
