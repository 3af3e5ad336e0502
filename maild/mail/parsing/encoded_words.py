"""Encoded-words (RFC 2047) and charsets: decoded linearly, only with real text codecs."""

from __future__ import annotations

import binascii
import encodings
import encodings.aliases
import pkgutil
import re
from dataclasses import dataclass
from types import MappingProxyType

from maild.mail.parsing.defects import Defects

MAX_ENCODED_WORDS = 256
"""Encoded-words decoded per header field; the rest stays as written."""
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
_B64_CLEAN = re.compile(rb"[A-Za-z0-9+/\s]*(?:={1,2}\s*)?")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]+")
_B64_PAD = re.compile(rb"=+")


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


def decode_words(value: str, defects: Defects) -> str:
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

    def flush(self, defects: Defects) -> str:
        if self.data is None:
            return ""
        text = decode_bytes(bytes(self.data), self.charset, defects, where="encoded-word")
        self.data = None
        return text


def _word_bytes(encoding: str, payload: str, defects: Defects) -> bytes:
    data = payload.encode("utf-8", "surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    return decode_base64(data, defects)


def decode_base64(data: bytes, defects: Defects) -> bytes:
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


def decode_bytes(data: bytes, charset: str | None, defects: Defects, *, where: str) -> str:
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
