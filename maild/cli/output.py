"""What every command shares: its exit codes, the default configuration, a plain aligned table for people,
JSON lines for scripts, the operator's login, and the one way a command reports the error it ends on."""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from maild.logs import current

if TYPE_CHECKING:
    from maild.settings import Settings
    from maild.store import Store

Handler = Callable[[argparse.Namespace, "Settings"], int]

EXIT_FAULT = 1
EXIT_CONFIG = 2
DEFAULT_CONFIG = "config/maild.toml"


log = logging.getLogger("maild.cli")


def fail(message: str, code: int = EXIT_FAULT) -> int:
    """Report the error a command ends on and return its exit code.

    Under ``--log-format json`` it is one JSON log record like every other line
    on stderr, so a log shipper reads it; else the plain line a person reads.
    """
    if current()[0] == "json":
        log.error(message, extra={"exit_code": code})
    else:
        print(f"maild: {message}", file=sys.stderr)
    return code


def emit(obj: dict[str, object]) -> None:
    """One JSON object on its own line of standard output."""
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def piped(handler: Handler) -> Handler:
    """Stop quietly when the reader of our output goes away (``maild queue | head``)."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return handler(args, settings)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 0

    return run


def open_store(settings: Settings) -> Store:
    """``maild.daemon.wiring.open_store``: the wiring imports the whole daemon, so only commands that need it do."""
    from maild.daemon.wiring import open_store as wired  # noqa: PLC0415 - see maild.cli.main

    return wired(settings)


def operator_login() -> str:
    """Who runs the command: the login behind ``sudo`` when there is one, else the process's own."""
    sudo = os.environ.get("SUDO_USER", "").strip()
    if sudo:
        return sudo
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def print_table(rows: Sequence[dict[str, object]], columns: Sequence[str], *, uncut: Sequence[str] = ()) -> None:
    """A plain aligned table: readable in a terminal, no dependency; ``uncut`` columns are never shortened."""
    cells = [[_cell(row.get(c), c in uncut) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: object, uncut: bool) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).replace("\n", " ")
    return text if uncut or len(text) <= 48 else text[:47] + "…"


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
        fail(f"cannot read {path}: {exc.strerror}")
        return None
