"""The embedded default, as `make run` starts it: Maildir in, SQLite, replies to a Maildir."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from maild.settings import load_settings
from tests.daemon_kit import write_config
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


def test_shipped_config_is_the_embedded_default() -> None:
    s = load_settings(REPO / "config" / "maild.toml")
    assert (s.mailbox.kind, str(s.mailbox.path)) == ("maildir", "var/mail/inbox")
    assert (s.smtp.kind, str(s.smtp.path)) == ("maildir", "var/mail/sent")
