"""The sender process against a real SMTP server and SQLite.

What must hold: every queued reply leaves once and is marked sent; a sender
process killed mid-stream loses nothing and repeats at most the reply in hand;
it ignores the signals meant for the daemon; a daemon whose sender process
dies starts another and keeps answering. ``maild run`` forks its first
children and spawns a replacement (``maild.daemon.processes.child_context``); the
tests in this process spawn, since it has threads.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from maild.clock import SystemClock
from maild.daemon.outbox.process import SenderProcess
from maild.daemon.outbox.sender import OutboxSender
from maild.daemon.outbox.transport import make_transport
from maild.daemon.processes import child_context
from maild.records import OutboxState
from maild.settings import Limits, Settings
from maild.store import Store
from tests.daemon_kit import (
    classify_reply,
    daemon,
    db_rows,
    duplicates,
    imap_table,
    run_cli,
    smtp_table,
    spawn_daemon,
    sqlite_url,
    write_config,
)
from tests.factories import settings
from tests.mailgen import corpus_mix
from tests.servers import ImapAccount, SmtpCapture, seed_imap, wait_until
from tests.test_sender import queue, states


def sender_settings(tmp_path: Path, smtp_server: SmtpCapture) -> Settings:
    return settings(database={"url": sqlite_url(tmp_path)}, smtp=smtp_table(smtp_server))


def queue_due(store: Store, count: int) -> list[str]:
    """``queue``'s replies, due now by the system clock (the sender process keeps the system's time)."""
    ids = queue(store, count)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET next_attempt_at = '2000-01-01'"))
    return ids


def accepted(smtp_server: SmtpCapture) -> Counter[str]:
    return Counter(classify_reply(m).message_id for m in smtp_server.messages)


def test_every_reply_leaves_once_is_marked_sent_and_reported(tmp_path: Path, smtp_server: SmtpCapture) -> None:
    config = sender_settings(tmp_path, smtp_server)
    with Store.open(config.database.url) as store:
        ids = queue_due(store, 300)
        process = SenderProcess(config)
        process.wake()
        finished = process.finish()
        assert finished.clean
        assert sum(report.sent for report in finished.reports) == 300
        assert accepted(smtp_server) == Counter(ids)
        assert set(states(store).values()) == {OutboxState.SENT}
        assert store.journal_dir is not None and list(store.journal_dir.iterdir()) == []


def test_a_killed_sender_process_loses_nothing_and_repeats_at_most_one(tmp_path: Path,
                                                                       smtp_server: SmtpCapture) -> None:
    config = sender_settings(tmp_path, smtp_server)
    with Store.open(config.database.url) as store:
        ids = queue_due(store, 1500)
        process = SenderProcess(config)
        process.wake()
        assert wait_until(lambda: len(smtp_server.messages) >= 200, 60)
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        finished = process.finish()
        assert not finished.clean and finished.exit_code == -signal.SIGKILL
        assert len(smtp_server.messages) < 1500  # killed mid-stream

        daemon_side = OutboxSender(store, make_transport(config), SystemClock(), Limits(), "host:daemon")
        daemon_side.recover()
        daemon_side.drain()
        daemon_side.transport.close()
        got = accepted(smtp_server)
        assert set(got) == set(ids)
        assert sum(n - 1 for n in got.values()) <= 1  # the reply between its 250 and its journal line
        assert set(states(store).values()) == {OutboxState.SENT}


def test_the_sender_process_ignores_the_daemon_s_signals(tmp_path: Path, smtp_server: SmtpCapture) -> None:
    config = sender_settings(tmp_path, smtp_server)
    with Store.open(config.database.url) as store:
        ids = queue_due(store, 4)
        with store.engine.begin() as conn:  # one reply due now, three later: it has started once that one left
            conn.execute(text("UPDATE outbox SET next_attempt_at = '2999-01-01' WHERE message_id <> :first"),
                         {"first": ids[0]})
        process = SenderProcess(config)
        process.wake()
        assert process.pid is not None
        assert wait_until(lambda: len(smtp_server.messages) == 1, 30)
        for signum in (signal.SIGTERM, signal.SIGINT):
            os.kill(process.pid, signum)
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE outbox SET next_attempt_at = '2000-01-01' WHERE state = 'pending'"))
        process.wake()
        assert wait_until(lambda: len(smtp_server.messages) == 4, 30)  # still at work
        assert process.alive()
        assert process.finish().clean
        assert accepted(smtp_server) == Counter(ids)


def test_a_daemon_whose_sender_process_dies_starts_another(tmp_path: Path, imap_account: ImapAccount,
                                                           smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    config = write_config(tmp_path / "maild.toml", mailbox=imap_table(imap_account), smtp=smtp_table(smtp_server),
                          database_url=url)
    _, d = daemon(config)
    first, second = corpus_mix(40, tag="first"), corpus_mix(40, tag="second")
    seed_imap(imap_account, [s.raw for s in first])
    runner = threading.Thread(target=d.run)
    runner.start()
    try:
        unsent = "SELECT COUNT(*) FROM outbox WHERE state <> 'sent'"
        assert wait_until(lambda: db_rows(url, "SELECT COUNT(*) FROM messages")[0][0] == 40, 60)
        assert wait_until(lambda: db_rows(url, unsent)[0][0] == 0, 60)
        process = d.sender_process
        assert process is not None and process.pid is not None
        killed = process.pid
        os.kill(killed, signal.SIGKILL)
        assert wait_until(lambda: process.alive() and process.pid != killed, 30)
        seed_imap(imap_account, [s.raw for s in second])
        assert wait_until(lambda: db_rows(url, "SELECT COUNT(*) FROM messages")[0][0] == 80, 120)
        assert wait_until(lambda: db_rows(url, unsent)[0][0] == 0, 60)
    finally:
        d.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert duplicates(smtp_server.messages) == {}
    answered = db_rows(url, "SELECT COUNT(*) FROM outbox")[0][0]
    assert len(smtp_server.messages) == answered > 0


def test_a_journal_that_cannot_be_opened_falls_back_to_a_commit_per_reply(tmp_path: Path,
                                                                         smtp_server: SmtpCapture) -> None:
    config = sender_settings(tmp_path, smtp_server)
    with Store.open(config.database.url) as store:
        assert store.journal_dir is not None
        store.journal_dir.write_text("not a folder")  # where the journal folder should be
        ids = queue_due(store, 5)
        process = SenderProcess(config)
        process.wake()
        finished = process.finish()
        assert finished.clean and sum(report.sent for report in finished.reports) == 5
        assert accepted(smtp_server) == Counter(ids)
        assert set(states(store).values()) == {OutboxState.SENT}


def _children(pid: int) -> set[int]:
    """The daemon's worker and sender (not the resource tracker that spawning starts), whichever
    of its threads started them."""
    listed = (int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split())
    return {c for c in listed if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()}


def _spawned(pid: int) -> bool:
    """A spawned child runs a fresh interpreter (``-c from multiprocessing.spawn ...``); a forked one
    keeps its parent's command line."""
    return b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()


def _holds_open(pid: int, database: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    return any(os.readlink(fd) == str(database) for fd in fds.iterdir())


def test_maild_run_forks_its_first_children_and_spawns_replacements(tmp_path: Path, imap_account: ImapAccount,
                                                                    smtp_server: SmtpCapture) -> None:
    """The forked worker and sender answer every message once. The daemon closed its database
    connections before forking: only the sender, which opens its own, holds the file. Children
    started again beside the daemon's threads are spawned, and answer too."""
    url = sqlite_url(tmp_path)
    database = Path(url.removeprefix("sqlite:///"))
    config = write_config(tmp_path / "maild.toml", mailbox=imap_table(imap_account), smtp=smtp_table(smtp_server),
                          database_url=url)
    unsent = "SELECT COUNT(*) FROM outbox WHERE state <> 'sent'"
    seed_imap(imap_account, [s.raw for s in corpus_mix(40, tag="forked")])
    Store.open(url).close()  # the schema, so that the checks below can count before the daemon is up
    process = spawn_daemon(config, log=tmp_path / "maild.log")
    try:
        assert wait_until(lambda: db_rows(url, "SELECT COUNT(*) FROM messages")[0][0] == 40, 60)
        assert wait_until(lambda: db_rows(url, unsent)[0][0] == 0, 60)
        forked = _children(process.pid)
        assert len(forked) == 2 and not any(_spawned(c) for c in forked)
        assert [_holds_open(c, database) for c in sorted(forked)].count(True) == 1
        for child in forked:
            os.kill(child, signal.SIGKILL)
        seed_imap(imap_account, [s.raw for s in corpus_mix(40, tag="respawned")])
        assert wait_until(lambda: db_rows(url, "SELECT COUNT(*) FROM messages")[0][0] == 80, 120)
        assert wait_until(lambda: db_rows(url, unsent)[0][0] == 0, 60)
        assert wait_until(lambda: len(_children(process.pid) - forked) == 2, 30)
        assert all(_spawned(c) for c in _children(process.pid))
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert process.returncode == 0
    assert duplicates(smtp_server.messages) == {}
    assert len(smtp_server.messages) == db_rows(url, "SELECT COUNT(*) FROM outbox")[0][0] > 0


def test_maild_run_that_cannot_open_its_database_ends_at_once_with_the_reason(tmp_path: Path) -> None:
    """A database that cannot be reached stops ``maild run`` at start: exit code 1, the reason on
    stderr, no traceback."""
    inbox = tmp_path / "inbox"
    config = write_config(tmp_path / "maild.toml", mailbox={"kind": "maildir", "path": str(inbox)},
                          smtp={"kind": "maildir", "path": str(tmp_path / "sent")},
                          database_url="postgresql://maild:nothing@127.0.0.1:9/maild")  # nobody listens on 9
    done = run_cli(config, "run", "--once", timeout=120)
    assert done.returncode == 1, done.stderr
    assert "database" in done.stderr.lower()
    assert "Traceback" not in done.stderr


def test_a_child_is_forked_only_when_this_process_has_one_thread_and_can_drop_its_connections(
        monkeypatch: pytest.MonkeyPatch) -> None:
    dropped: list[bool] = []
    monkeypatch.setattr("maild.daemon.processes.threading.active_count", lambda: 1)
    assert child_context(None).get_start_method() == "spawn"
    assert child_context(lambda: dropped.append(True)).get_start_method() == "fork"
    assert dropped == [True]
    monkeypatch.setattr("maild.daemon.processes.threading.active_count", lambda: 2)
    assert child_context(lambda: dropped.append(True)).get_start_method() == "spawn"
    assert dropped == [True]
