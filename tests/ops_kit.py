"""Helpers for the operators' tests: configurations with extra tables, requests, CLI JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.daemon_kit import imap_table, run_cli, smtp_table, toml_value, write_config
from tests.mailgen import fresh_copy
from tests.servers import ImapAccount, SmtpCapture

OPERATORS = ["operatori@servizi.example.it", "capo.servizio@servizi.example.it"]
TRUSTED_PASS = ("Authentication-Results: mx.servizi.example.it; dkim=pass header.d=ateneo.example.it;"
                " dmarc=pass header.from=ateneo.example.it\r\n")
SPOOFED = ("Authentication-Results: mx.servizi.example.it; dkim=none; spf=fail smtp.mailfrom=ateneo.example.it;"
           " dmarc=fail header.from=ateneo.example.it\r\n")


def append_tables(config: Path, tables: dict[str, dict[str, Any]]) -> Path:
    """Add ``[name]`` tables at the end of a configuration written by ``write_config``."""
    lines = [""]
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
        lines.append("")
    with config.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    return config


def ops_config(tmp_path: Path, account: ImapAccount, smtp: SmtpCapture, url: str, *,
               tables: dict[str, dict[str, Any]] | None = None, **mailbox: Any) -> Path:
    config = write_config(tmp_path / "maild.toml", mailbox=imap_table(account, **mailbox), smtp=smtp_table(smtp),
                          database_url=url)
    return append_tables(config, tables or {})


def request(sender: str, subject: str, body: str, received: str, *, auth: str = "") -> tuple[str, bytes]:
    """A request as the MX delivers it: (Message-ID, raw bytes with CRLF)."""
    return fresh_copy((
        f"{auth}Received: from smtp-out.ateneo.example.it by mx.servizi.example.it; {received}\r\n"
        f"From: <{sender}>\r\nTo: helpdesk-posta@servizi.example.it\r\nSubject: {subject}\r\n"
        f"Date: {received}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode(), "ops")


def cli_json(config: Path, *args: str) -> list[dict[str, Any]]:
    """Run ``maild ARGS --json`` and parse its lines; fails with stderr when the command fails."""
    done = run_cli(config, *args, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
