"""What every command shares: its exit codes, the default configuration, and a plain aligned table for people."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_FAULT = 1
EXIT_CONFIG = 2
DEFAULT_CONFIG = "config/maild.toml"


def print_table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> None:
    """A plain aligned table: readable in a terminal, no dependency."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 48 else text[:47] + "…"


def redact(url: str) -> str:
    """Database URL without its password, for printing."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    credentials, _, host = tail.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{host}"


def read_file(path: Path) -> bytes | None:
    """The bytes of a FILE argument, or None once the reason it cannot be read is on stderr."""
    try:
        return path.read_bytes()
    except OSError as exc:
        print(f"maild: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None
