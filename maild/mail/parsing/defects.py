"""What every part of the parser shares: the bounded defect list and text cleaning."""

from __future__ import annotations

import re

MAX_DEFECTS = 64
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
TRAILING_SPACE = re.compile(r"[ \t]+\n")


class Defects:
    """Ordered, de-duplicated and bounded: a hostile message cannot grow it without end."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def add(self, code: str, detail: str = "") -> None:
        if len(self._items) >= MAX_DEFECTS:
            self._items.setdefault("defects-truncated", None)
            return
        if detail:
            code = f"{code}: {' '.join(clean_header(detail).split())[:80]}"
        self._items.setdefault(code, None)

    def freeze(self) -> tuple[str, ...]:
        return tuple(self._items)


def clean_header(text: str) -> str:
    """No control characters (header injection) and no lone surrogates (PostgreSQL)."""
    text = CONTROL.sub(" ", text)
    return _SURROGATE.sub("\ufffd", text) if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def clean_body(text: str) -> str:
    """One newline convention, no NUL, no BOM, no lone surrogates."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    if _has_surrogate(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text.lstrip("\ufeff")
