"""Faults without side effects, against the real servers.

What must hold: a relay that refuses some replies for now delays those alone,
never the others, and every reply still arrives exactly once; a database or a
disk that fails after the SMTP server accepted a reply never makes a living
sender send it again, nor leaves the rest of its claim to a lease; a database
outage during intake quarantines nothing. The backoff is driven by the test's
clock: nothing waits for minutes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from maild.daemon.outbox import journal as journal_module
from maild.daemon.outbox.journal import open_journal
from maild.daemon.outbox.sender import Backoff, OutboxSender
from maild.daemon.outbox.transport import SmtpTransport
from maild.errors import StoreError, StoreUnavailable
from maild.mail.maildir import make_maildir
from maild.records import OutboxState
from maild.settings import Limits, Smtp
from maild.store import Store
from maild.store.engine import translated
from tests.daemon_kit import (
    FakeClock,
    classify_reply,
    daemon,
    db_rows,
    imap_table,
    replies_by_original,
    run_cli,
    smtp_table,
    spawn_daemon,
    write_config,
)
from tests.servers import ImapAccount, PrivatePostgres, SmtpCapture, make_message, seed_imap, wait_until
from tests.test_sender import NOW, queue, states

ROUNDS = 12
"""Most drains a test allows before it calls the outbox stuck."""


def transport(server: SmtpCapture) -> SmtpTransport:
    return SmtpTransport(Smtp(kind="smtp", host=server.host, port=server.port, tls="none", timeout=10.0))


def delivered(server: SmtpCapture) -> Counter[str]:
    return Counter(classify_reply(m).message_id for m in server.messages)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/maild.db") as store:
        yield store


def drain_until_sent(sender: OutboxSender, clock: FakeClock, total: int) -> int:
    """Drain, then let the clock pass every backoff, until all ``total`` are sent; how many drains it took."""
    for rounds in range(1, ROUNDS + 1):
        sender.drain()
        if sum(state is OutboxState.SENT for state in states(sender.store).values()) == total:
            return rounds
        clock.current += sender.backoff.cap
    left = Counter(states(sender.store).values())
    raise AssertionError(f"not all {total} replies were sent in {ROUNDS} drains: {left}")


# ---------------------------------------------------------------- a relay that refuses some replies for now


def test_a_relay_refusing_one_data_in_five_delays_those_alone(sqlite_store: Store, smtp_server: SmtpCapture) -> None:
    ids = queue(sqlite_store, 1000)
    smtp_server.refuse_data_every(5)
    clock = FakeClock(NOW)
    sender = OutboxSender(sqlite_store, transport(smtp_server), clock, Limits(), "host:1",
                          backoff=Backoff(jitter=lambda: 0.5), journal=open_journal(sqlite_store, "host:1"))
    started = time.monotonic()
    try:
        first = sender.drain()
        assert (first.sent, first.deferred, first.failed) == (800, 200, 0)  # the others went on
        rounds = 1 + drain_until_sent(sender, clock, len(ids))
    finally:
        sender.transport.close()
    assert time.monotonic() - started < 60  # promptly: a hang guard, the clock did the waiting
    assert delivered(smtp_server) == Counter(ids)  # every reply exactly once
    assert smtp_server.refused_data >= 249 and rounds <= 7  # refusals went on to the end, each round a fifth
    assert len({m.peer for m in smtp_server.messages}) == 1  # a 4xx keeps the connection
    attempts = Counter(o.attempts for o in sqlite_store.outbox())
    assert attempts[1] == 800 and sum(attempts.values()) == 1000  # a reply's tries are its own


def test_a_dropped_connection_is_reopened_at_once_for_the_rest(sqlite_store: Store,
                                                               smtp_server: SmtpCapture) -> None:
    ids = queue(sqlite_store, 100)
    smtp_server.refuse_data_every(5, "421 4.3.2 closing the connection")  # and smtplib closes it
    clock = FakeClock(NOW)
    sender = OutboxSender(sqlite_store, transport(smtp_server), clock, Limits(), "host:1")
    try:
        first = sender.drain()
        assert (first.sent, first.deferred) == (80, 20)  # each drop cost its own reply only
        drain_until_sent(sender, clock, len(ids))
    finally:
        sender.transport.close()
    assert delivered(smtp_server) == Counter(ids)
    assert len({m.peer for m in smtp_server.messages}) > 20  # a new connection after each drop


# ---------------------------------------------------------------- a fault after the server's 250


def test_postgresql_restarted_while_replies_are_marked_sends_none_twice(private_pg: PrivatePostgres,
                                                                        smtp_server: SmtpCapture) -> None:
    with Store.open(private_pg.url) as store:
        ids = queue(store, 30)
        smtp_server.on_accept(lambda accepted: private_pg.stop() if accepted == 10 else None)
        clock = FakeClock(NOW)  # never moved: no lease can run out
        sender = OutboxSender(store, transport(smtp_server), clock, Limits(), "host:1")
        try:
            with pytest.raises(StoreError):
                sender.drain()  # the 10th reply's 250 came with the database gone
            assert len(smtp_server.messages) == 10 and not sender.settled
            with pytest.raises(StoreError):
                sender.drain()  # still down: what it knows is kept, nothing is claimed or sent
            assert len(smtp_server.messages) == 10
            smtp_server.on_accept(None)
            private_pg.start()
            report = sender.drain()
        finally:
            sender.transport.close()
        assert report.sent == 20 and sender.settled
        assert delivered(smtp_server) == Counter(ids)  # none twice, none left to a lease
        assert set(states(store).values()) == {OutboxState.SENT}


def test_a_journal_write_refused_by_a_full_disk_falls_back_to_a_commit(
    sqlite_store: Store, smtp_server: SmtpCapture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = queue(sqlite_store, 6)
    real_append = journal_module._append

    def full_disk_after_three(fd: int, line: bytes) -> int:
        if int(line) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_append(fd, line)

    monkeypatch.setattr(journal_module, "_append", full_disk_after_three)
    journal = open_journal(sqlite_store, "host:1")
    sender = OutboxSender(sqlite_store, transport(smtp_server), FakeClock(NOW), Limits(), "host:1",
                          journal=journal)
    try:
        assert sender.drain().sent == 6 and sender.settled
    finally:
        sender.transport.close()
    assert delivered(smtp_server) == Counter(ids)
    assert set(states(sqlite_store).values()) == {OutboxState.SENT}
    assert journal is not None and journal.path.read_bytes() == b""  # folded; no line cut short left behind


def test_a_short_journal_write_is_cut_off_so_no_later_line_is_glued_to_it(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = open_journal(sqlite_store, "host:1")
    assert journal is not None
    journal.record(12)
    monkeypatch.setattr(journal_module, "_append", lambda fd, line: os.write(fd, line[:1]))
    with pytest.raises(StoreError, match="short write"):
        journal.record(345)
    monkeypatch.undo()
    journal.record(6)
    assert journal.path.read_bytes() == b"12\n6\n"  # not "12\n36\n"
    journal.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own, to fill up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Write to ``disk`` until not one byte more fits; returns the file to remove to free it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    chunk = 1 << 16
    try:
        while chunk:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                chunk //= 2
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_after_the_250_sends_none_twice(small_disk: Path, smtp_server: SmtpCapture,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with Store.open(f"sqlite:///{small_disk}/maild.db") as store:
        ids = queue(store, 40)
        filler: list[Path] = []
        smtp_server.on_accept(lambda accepted: filler.append(fill(small_disk)) if accepted == 1 else None)
        journal = open_journal(store, "host:1")
        sender = OutboxSender(store, transport(smtp_server), FakeClock(NOW), Limits(), "host:1", journal=journal)
        try:
            with caplog.at_level(logging.WARNING, "maild.sender"), contextlib.suppress(StoreError):
                sender.drain()  # the journal refuses the first mark; the database takes it, or it is kept
            assert "cannot write the sent journal" in caplog.text
            assert set(delivered(smtp_server).values()) == {1}
            smtp_server.on_accept(None)
            filler[0].unlink()
            sender.drain()
        finally:
            sender.transport.close()
            if journal is not None:
                journal.close()
        assert delivered(smtp_server) == Counter(ids)  # none twice, none lost, no lease waited for
        assert set(states(store).values()) == {OutboxState.SENT} and sender.settled


# ---------------------------------------------------------------- a database outage during intake


def deliver(inbox: Path, numbers: range) -> None:
    for n in numbers:
        (inbox / "tmp" / f"{n}.eml").write_bytes(make_message(n, tag="outage"))
        (inbox / "tmp" / f"{n}.eml").rename(inbox / "new" / f"{n}.eml")


def in_folder(folder: Path) -> int:
    return sum(1 for sub in ("new", "cur") if (folder / sub).exists() for _ in (folder / sub).iterdir())


def test_a_database_outage_during_intake_quarantines_nothing(private_pg: PrivatePostgres, smtp_server: SmtpCapture,
                                                             tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inbox = tmp_path / "inbox"
    make_maildir(inbox)
    config = write_config(tmp_path / "maild.toml", mailbox={"kind": "maildir", "path": str(inbox)},
                          smtp=smtp_table(smtp_server), database_url=private_pg.url)
    _, intake = daemon(config, FakeClock(NOW))
    try:
        deliver(inbox, range(100))
        assert intake.drain_mailbox() == 100
        private_pg.stop()
        deliver(inbox, range(100, 250))
        with caplog.at_level(logging.INFO, "maild"), pytest.raises(StoreUnavailable):
            intake.drain_mailbox()
        assert "quarantin" not in caplog.text  # neither done nor said: the database is at fault, not the mail
        assert in_folder(inbox) == 150 and in_folder(inbox / ".Quarantine") == 0
        private_pg.start()
        assert intake.drain_mailbox() == 150
    finally:
        intake.source.close()
        intake.store.close()
    assert in_folder(inbox) == 0 and in_folder(inbox / ".Processed") == 250
    assert in_folder(inbox / ".Quarantine") == 0
    assert db_rows(private_pg.url, "SELECT count(*), count(DISTINCT message_id) FROM messages") == [(250, 250)]
    assert db_rows(private_pg.url, "SELECT count(*) FROM quarantine") == [(0,)]


def test_a_running_daemon_waits_out_a_database_outage_and_says_so(private_pg: PrivatePostgres,
                                                                 smtp_server: SmtpCapture, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    make_maildir(inbox)
    config = write_config(tmp_path / "maild.toml", mailbox={"kind": "maildir", "path": str(inbox)},
                          smtp=smtp_table(smtp_server), database_url=private_pg.url)
    log = tmp_path / "maild.log"
    process = spawn_daemon(config, log=log)
    try:
        deliver(inbox, range(20))
        assert wait_until(lambda: len(smtp_server.messages) == 20, 60), log.read_text()[-3000:]
        private_pg.stop()
        deliver(inbox, range(20, 50))
        # its mailbox lock went with the database session: it stands by, and the log blames the database
        assert wait_until(lambda: "database unavailable" in log.read_text(), 60), log.read_text()[-3000:]
        assert in_folder(inbox) == 30 and process.poll() is None  # left in the mailbox; the daemon lives on
        private_pg.start()
        assert wait_until(lambda: len(smtp_server.messages) == 50, 120), log.read_text()[-3000:]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    text_of_log = log.read_text()
    assert "nothing quarantined" in text_of_log and "quarantining" not in text_of_log  # the log says whose fault
    assert in_folder(inbox) == 0 and in_folder(inbox / ".Quarantine") == 0
    assert db_rows(private_pg.url, "SELECT count(*) FROM quarantine") == [(0,)]
    assert sorted(len(r) for r in replies_by_original(smtp_server.messages).values()) == [1] * 50  # each once


def test_a_fault_of_the_data_is_told_from_a_fault_of_the_database(private_pg: PrivatePostgres) -> None:
    with Store.open(private_pg.url) as store:
        queue(store, 1)
        with pytest.raises(StoreError) as caught, translated("copy"), store.engine.begin() as conn:
            conn.execute(text("INSERT INTO outbox SELECT * FROM outbox"))  # the same id twice: the row's fault
        assert not isinstance(caught.value, StoreUnavailable)
        private_pg.stop()
        with pytest.raises(StoreUnavailable, match="OperationalError"):
            store.outbox()


# ---------------------------------------------------------------- one reader, one standby


def recorded(url: str) -> int:
    return int(db_rows(url, "SELECT count(DISTINCT message_id) FROM messages")[0][0])


def test_one_daemon_reads_the_mailbox_and_a_standby_takes_over(tmp_path: Path, imap_account: ImapAccount,
                                                               smtp_server: SmtpCapture, pg_url: str) -> None:
    config = write_config(tmp_path / "maild.toml", mailbox=imap_table(imap_account), smtp=smtp_table(smtp_server),
                          database_url=pg_url)
    assert run_cli(config, "db", "upgrade").returncode == 0
    a_log, b_log = tmp_path / "a.log", tmp_path / "b.log"
    reader = spawn_daemon(config, log=a_log)
    standby: subprocess.Popen[bytes] | None = None
    try:
        assert wait_until(lambda: "this daemon reads the mailbox" in a_log.read_text(), 60), a_log.read_text()
        standby = spawn_daemon(config, log=b_log)
        assert wait_until(lambda: "another daemon reads the mailbox" in b_log.read_text(), 60), b_log.read_text()
        seed_imap(imap_account, [make_message(n, tag="reader") for n in range(100)])
        assert wait_until(lambda: recorded(pg_url) == 100, 120), a_log.read_text()[-3000:]
        # The reader logs each message after its batch commits: the count can be seen before the lines.
        assert wait_until(lambda: "queued" in a_log.read_text(), 30), a_log.read_text()[-3000:]
        assert "queued" not in b_log.read_text() and "UIDVALIDITY" not in b_log.read_text()  # never even connected
        status = json.loads(run_cli(config, "status", "--json").stdout)
        assert status["reader"].endswith(f":{reader.pid}")

        reader.kill()  # SIGKILL: its database session ends with it, and the lock with the session
        reader.wait(timeout=30)
        killed = time.monotonic()
        assert wait_until(lambda: "this daemon reads the mailbox" in b_log.read_text(), 30), b_log.read_text()
        assert time.monotonic() - killed < 10  # within seconds
        seed_imap(imap_account, [make_message(n, tag="reader") for n in range(100, 150)])
        assert wait_until(lambda: recorded(pg_url) == 150, 120), b_log.read_text()[-3000:]
        assert json.loads(run_cli(config, "status", "--json").stdout)["reader"].endswith(f":{standby.pid}")
    finally:
        for process in (reader, standby):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    assert db_rows(pg_url, "SELECT count(*) FROM messages") == [(150,)]
    assert db_rows(pg_url, "SELECT count(*) FROM quarantine") == [(0,)]
