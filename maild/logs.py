"""Logging setup: one logger per subsystem, text for people, JSON for shippers.

Code logs with lazy %-arguments and passes the message and ticket it is about
as ``extra={"message_id": ..., "ticket": ...}``; both formats print them on
every line that has them, so an operator can follow one message through the
daemon with a single grep.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

CONTEXT_FIELDS = ("message_id", "ticket", "source_id", "outbox_id")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def context(message_id: str | None = None, ticket: str | None = None, **more: object) -> dict[str, object]:
    """The ``extra=`` mapping for a log call about one message or ticket."""
    fields: dict[str, object] = {k: v for k, v in more.items() if v is not None}
    if message_id is not None:
        fields["message_id"] = message_id
    if ticket is not None:
        fields["ticket"] = ticket
    return fields


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """``2026-11-28T21:00:00Z INFO maild.poller fetched 3 messages message_id=<..> ticket=HD-..``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname} {record.name} {record.getMessage()}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, event and fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(_fields(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure(fmt: str = "text", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Install one stderr handler on the ``maild`` logger tree."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("maild")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def current() -> tuple[str, str]:
    """The format and level ``configure`` installed, for a child process to install the same."""
    root = logging.getLogger("maild")
    fmt = "json" if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers) else "text"
    return fmt, logging.getLevelName(root.getEffectiveLevel())
