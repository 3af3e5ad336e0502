"""Logs a shipper can read: JSON lines with the Message-ID and ticket of every message, no credentials."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from maild import logs
from tests.daemon_kit import db_rows, imap_table, run_cli, smtp_table, write_config
from tests.mailgen import corpus_mix
from tests.servers import ImapAccount, SmtpCapture, seed_imap

SECRET = "Wrong-Secret-Never-Logged-4242"
LOGGER = re.compile(r"^maild\.[a-z]+$")


def json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    for line in lines:
        assert {"timestamp", "level", "logger", "event"} <= line.keys(), line
        assert LOGGER.match(line["logger"]), line  # one logger per subsystem
    return lines


def test_json_log_lines_parse_and_name_the_message_and_its_ticket(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture, pg_url: str) -> None:
    samples = corpus_mix(60, tag="logs")
    seed_imap(imap_account, [s.raw for s in samples])
    config = write_config(tmp_path / "maild.toml", mailbox=imap_table(imap_account), smtp=smtp_table(smtp_server),
                          database_url=pg_url)
    done = run_cli(config, "run", "--once", "--log-format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = json_lines(done.stderr)

    tickets = dict(db_rows(pg_url, "SELECT m.message_id, t.reference FROM messages m "
                                   "LEFT JOIN tickets t ON t.id = m.ticket_id"))
    intake = [line for line in lines if line["logger"] == "maild.intake"]
    assert {line["message_id"] for line in intake} == {s.message_id for s in samples}
    for line in intake:
        assert line.get("ticket") == tickets[line["message_id"]], line  # None only for ignored mail
        assert line["source_id"]

    replies = dict(db_rows(pg_url, "SELECT o.message_id, t.reference FROM outbox o "
                                   "JOIN tickets t ON t.id = o.ticket_id"))
    sent = [line for line in lines if line["logger"] == "maild.sender" and "outbox_id" in line]
    assert len(sent) == len(replies) == len(smtp_server.messages)
    for line in sent:
        assert line["ticket"] == replies[line["message_id"]], line

    password = pg_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password and password not in done.stderr + done.stdout
    assert imap_account.password not in {str(v) for line in lines for v in line.values()}

    # Copies moved back into the inbox are only moved again: those lines name the message too.
    with imap_account.connect() as client:
        client.select_folder(imap_account.processed_folder)
        client.copy(client.search(["ALL"])[:5], "INBOX")
    again = run_cli(config, "run", "--once", "--log-format", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    known = [line for line in json_lines(again.stderr) if line["event"].startswith("already recorded")]
    assert len(known) == 5 and all(line["message_id"] in tickets for line in known)


def test_text_log_lines_carry_the_same_fields(tmp_path: Path, imap_account: ImapAccount,
                                              smtp_server: SmtpCapture) -> None:
    samples = corpus_mix(6, tag="text")
    seed_imap(imap_account, [s.raw for s in samples])
    config = write_config(tmp_path / "maild.toml", mailbox=imap_table(imap_account), smtp=smtp_table(smtp_server),
                          database_url=f"sqlite:///{tmp_path / 'maild.db'}")
    done = run_cli(config, "run", "--once", "--log-format", "text")
    assert done.returncode == 0, done.stderr[-3000:]
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) maild\.[a-z]+ ")
    lines = done.stderr.splitlines()
    assert lines and all(stamp.match(line) for line in lines)
    intake = [line for line in lines if " maild.intake " in line]
    assert len(intake) == 6
    for sample in samples:
        assert any(f"message_id={sample.message_id}" in line for line in intake)


def test_credentials_never_reach_the_logs_even_when_the_login_fails(tmp_path: Path, imap_account: ImapAccount,
                                                                      smtp_server: SmtpCapture) -> None:
    config = write_config(tmp_path / "maild.toml", mailbox=imap_table(imap_account, password=SECRET),
                          smtp=smtp_table(smtp_server), database_url=f"sqlite:///{tmp_path / 'maild.db'}")
    for fmt in ("json", "text"):
        done = run_cli(config, "run", "--once", "--log-format", fmt)
        assert done.returncode == 1  # a refused login stops maild: retrying will not help
        assert "login refused" in done.stderr
        assert SECRET not in done.stderr + done.stdout
    status = run_cli(config, "status", "--json", "--timeout", "10")
    # No daemon runs (each run above stopped at the refused login): 3, the LSB "not running".
    assert status.returncode == 3 and json.loads(status.stdout)["mailbox"]["reachable"] is False
    assert SECRET not in status.stderr + status.stdout
    check = run_cli(config, "check-config")
    assert check.returncode == 0 and SECRET not in check.stdout + check.stderr



def test_a_fatal_error_is_a_json_record_under_log_format_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[helpdesk]\naddress = "helpdesk-posta@servizi.example.it"\nnot_a_key = 1\n', encoding="utf-8")
    done = run_cli(bad, "check-config", "--log-format", "json")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = json_lines(done.stderr)
    assert (line["level"], line["logger"], line["exit_code"]) == ("ERROR", "maild.cli", 2)
    assert line["event"].startswith(f"configuration error in {bad}: ") and "not_a_key" in line["event"]
    plain = run_cli(bad, "check-config")
    assert plain.returncode == 2 and plain.stderr == f"maild: {line['event']}\n"

    # The database out of reach at start: every line the daemon wrote, the last one included, is JSON.
    unreachable = write_config(tmp_path / "maild.toml", mailbox={"kind": "maildir", "path": str(tmp_path / "in")},
                               smtp={"kind": "maildir", "path": str(tmp_path / "out")},
                               database_url="postgresql+psycopg://maild:pw@127.0.0.1:1/maild")
    run = run_cli(unreachable, "run", "--once", "--log-format", "json")
    assert run.returncode == 1
    last = json_lines(run.stderr)[-1]
    assert (last["level"], last["logger"], last["exit_code"]) == ("ERROR", "maild.cli", 1)
    assert last["event"].startswith("StoreUnavailable: ") and "Connection refused" in last["event"]


@pytest.mark.parametrize(("fmt", "level"), [("json", "WARNING"), ("text", "DEBUG")])
def test_a_child_process_learns_the_format_and_level_in_force(fmt: str, level: str) -> None:
    tree = logging.getLogger("maild")
    saved = (tree.handlers[:], tree.level, tree.propagate)
    try:
        logs.configure(fmt, level, io.StringIO())
        assert logs.current() == (fmt, level)
    finally:
        tree.handlers[:], tree.level, tree.propagate = saved
