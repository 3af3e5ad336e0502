"""The embedded default, as `make run` starts it: Maildir in, SQLite, replies to a Maildir."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from maild.settings import load_settings
from tests.daemon_kit import run_cli, write_config
from tests.factories import REPO
from tests.servers import wait_until


def files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*")) if folder.exists() else []


def test_make_run_answers_examples_and_new_files_then_stops_cleanly(tmp_path: Path) -> None:
    inbox, sent = tmp_path / "inbox", tmp_path / "sent"
    config = write_config(tmp_path / "maild.toml", mailbox={"kind": "maildir", "path": str(inbox)},
                          smtp={"kind": "maildir", "path": str(sent)},
                          database_url=f"sqlite:///{tmp_path / 'maild.db'}")
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "maild.cli", "run", "--seed-examples", "--config",
                                   str(config)], cwd=REPO, stdout=out, stderr=out)
    try:
        examples = sorted((REPO / "examples").glob("*.eml"))
        # Every example but the auto-reply is answered; the spoofed one also gets a referente notice.
        assert wait_until(lambda: len(files(sent / "new")) == len(examples), 60), log.read_text()
        # Replies go out once the tickets are committed; the files move to Processed just after.
        assert wait_until(lambda: files(inbox / "new") == [] == files(inbox / "cur"), 10), log.read_text()
        assert len(files(inbox / ".Processed" / "cur")) == len(examples)
        dropped = (REPO / "tests" / "data" / "corpus" / "d030.eml").read_bytes()
        (inbox / "tmp" / "dropped.eml").write_bytes(dropped)
        (inbox / "tmp" / "dropped.eml").rename(inbox / "new" / "dropped.eml")
        assert wait_until(lambda: len(files(sent / "new")) == len(examples) + 1, 15), log.read_text()
    finally:
        daemon.send_signal(signal.SIGINT)
        code = daemon.wait(timeout=30)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert "SIGINT received" in text and "maild stopped" in text


def test_a_second_make_run_says_the_examples_were_answered_already(tmp_path: Path) -> None:
    inbox, sent = tmp_path / "inbox", tmp_path / "sent"
    config = write_config(tmp_path / "maild.toml", mailbox={"kind": "maildir", "path": str(inbox)},
                          smtp={"kind": "maildir", "path": str(sent)},
                          database_url=f"sqlite:///{tmp_path / 'maild.db'}")
    first = run_cli(config, "run", "--seed-examples", "--once")
    assert first.returncode == 0, first.stderr
    assert f"maild: delivered 6 example messages into {inbox}/new" in first.stderr
    assert "already" not in first.stderr
    # The examples' Message-IDs are <exNN....>, NN as in their file names.
    tickets = dict(re.findall(r"message_id=<ex(\d\d)\.[^>]+> ticket=(HD-\d{4}-\d{6})", first.stderr))
    assert sorted(tickets) == ["01", "02", "03", "05", "06"]  # every example but the auto-reply opens one
    replies = files(sent / "new")

    again = run_cli(config, "run", "--seed-examples", "--once")
    assert again.returncode == 0, again.stderr
    said = {line.split(":")[1].strip(): line.split(":", 2)[2].strip()
            for line in again.stderr.splitlines() if line.startswith("maild: examples/")}
    assert sorted(said) == sorted(f"examples/{p.name}" for p in (REPO / "examples").glob("*.eml"))
    for name, line in said.items():
        number = name.removeprefix("examples/")[:2]
        assert line == (f"already answered on a previous run (ticket {tickets[number]}); not answered again"
                        if number in tickets else
                        "already recorded on a previous run (automatic mail: no ticket, no answer); "
                        "not recorded again")
    assert "every example was recorded on a previous run" in again.stderr
    assert "delivered" not in again.stderr and "moving" not in again.stderr
    assert files(sent / "new") == replies  # nothing answered twice
    assert files(inbox / "new") == [] and len(files(inbox / ".Processed" / "cur")) == 6


def test_shipped_config_is_the_embedded_default() -> None:
    s = load_settings(REPO / "config" / "maild.toml")
    assert (s.mailbox.kind, str(s.mailbox.path)) == ("maildir", "var/mail/inbox")
    assert (s.smtp.kind, str(s.smtp.path)) == ("maildir", "var/mail/sent")
