"""Helpers for daemon tests: configurations on the real servers, runs, and checks.

A configuration is written as a TOML file, exactly as an operator would, so
the same file serves the in-process daemon and ``maild run`` subprocesses.
"""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from maild.daemon.loop import Daemon
from maild.daemon.wiring import build_daemon
from maild.settings import Settings, load_settings
from maild.store import Store
from tests.factories import REFERENTE, REPO, TRUSTED
from tests.servers import CapturedMail, ImapAccount, SmtpCapture

HIGH_LIMITS = {"max_replies_per_sender_per_hour": 100_000, "max_replies_per_sender_per_day": 100_000,
               "max_referente_notices_per_hour": 100_000, "max_referente_notices_per_day": 100_000}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text_value = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text_value}"'


def write_config(path: Path, *, mailbox: dict[str, Any], smtp: dict[str, Any], database_url: str,
                 limits: dict[str, Any] | None = None) -> Path:
    tables: dict[str, dict[str, Any]] = {
        "helpdesk": {"address": "helpdesk-posta@servizi.example.it", "name": "Help Desk Posta Elettronica",
                     "trusted_authserv_ids": [TRUSTED]},
        "service_hours": {"subdivision": "GE", "closed_dates": ["2026-12-24", "2027-08-16"]},
        "mailbox": mailbox, "smtp": smtp, "database": {"url": database_url},
        "limits": {**HIGH_LIMITS, **(limits or {})},
    }
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
        lines.append("")
    lines += ["[[administrations]]", 'name = "Ateneo"', f'referente = "{REFERENTE}"',
              'delegates = ["delegato.sistemi@ateneo.example.it", "vice.referente@ateneo.example.it"]', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def imap_table(account: ImapAccount, **changes: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "kind": "imap", "host": account.host, "port": account.port, "tls": "starttls",
        "username": account.user, "password": account.password, "ca_file": str(account.ca_file),
        "processed_folder": account.processed_folder, "quarantine_folder": account.quarantine_folder,
        "idle": True, "poll_interval": 1.0,
    }
    table.update(changes)
    return table


def smtp_table(server: SmtpCapture) -> dict[str, Any]:
    return {"kind": "smtp", "host": server.host, "port": server.port, "tls": "none", "timeout": 10.0}


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'maild.db'}"


class FakeClock:
    """A settable clock for the daemon: tests move it, nothing sleeps."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def daemon(config: Path, clock: FakeClock | None = None) -> tuple[Settings, Daemon]:
    settings = load_settings(config)
    return settings, build_daemon(settings, clock)


def run_cli(config: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``maild ARGS --config CONFIG`` in a subprocess, from the repository root."""
    return subprocess.run([sys.executable, "-m", "maild.cli", *args, "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False, env=dict(os.environ))


def spawn_daemon(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "maild.cli", "run", *args, "--config", str(config)],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


# ------------------------------------------------------------------ checks


@dataclass(frozen=True, slots=True)
class Reply:
    kind: str
    message_id: str
    in_reply_to: str
    to: str
    subject: str
    mail_from: str


def classify_reply(mail: CapturedMail) -> Reply:
    msg = email.message_from_bytes(mail.data, policy=email.policy.default)
    auto = str(msg.get("Auto-Submitted", ""))
    in_reply_to = str(msg.get("In-Reply-To", "")).strip()
    to = str(msg.get("To", "")).strip().lower()
    if to == REFERENTE and not in_reply_to:
        kind = "notice"
    elif auto.startswith("auto-replied"):
        kind = "reply"
    else:
        kind = "other"
    return Reply(kind, str(msg.get("Message-ID", "")).strip(), in_reply_to, to, str(msg.get("Subject", "")),
                 mail.mail_from)


def replies_by_original(mails: list[CapturedMail]) -> dict[str, list[Reply]]:
    grouped: dict[str, list[Reply]] = defaultdict(list)
    for mail in mails:
        reply = classify_reply(mail)
        if reply.kind == "reply":
            grouped[reply.in_reply_to].append(reply)
    return grouped


def duplicates(mails: list[CapturedMail]) -> dict[str, int]:
    """Message-IDs the SMTP server accepted more than once."""
    counts = Counter(classify_reply(m).message_id for m in mails)
    return {mid: n for mid, n in counts.items() if n > 1}


def db_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query))]
    finally:
        store.close()


def saturday_afternoon() -> datetime:
    return datetime(2027, 1, 16, 15, 30, tzinfo=UTC)
