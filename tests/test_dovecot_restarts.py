"""Dovecot restarted while the daemon connects, idles and fetches: the daemon rides it out.

Each test runs the real daemon in a thread, as ``maild run`` runs it, against a
Dovecot of the test's own (``PrivateDovecot``), so that stopping it disturbs no
other test. Where a restart must land at one exact step (a command of the
connection, the n-th FETCH of a drain), the test wraps that IMAPClient method so
that the server restarts just before the daemon's command goes out; the rest is
the daemon's own code. An exception escaping the daemon's thread fails the test
(``filterwarnings`` in pyproject.toml). Every test checks that the daemon is
still running afterwards, that each message was recorded once with one ticket
and moved to Processed, and that each reply went out once.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from maild.daemon.loop import MOVE_EVERY, Daemon
from tests.daemon_kit import daemon, db_rows, duplicates, sqlite_url
from tests.mailgen import Sample, corpus_mix
from tests.servers import ImapAccount, PrivateDovecot, SmtpCapture, folder_counts, seed_imap, wait_until
from tests.test_daemon import check_replies, check_tickets, config_for

HANG_GUARD = 300.0
"""Seconds a wait may take before the test fails instead of hanging; never a speed claim."""
BATCH = 200
"""The ``[mailbox] batch_size`` default: a drain sends a FETCH of sizes and one of bodies per batch."""


@contextmanager
def running(d: Daemon) -> Iterator[threading.Thread]:
    """The daemon running in a thread of its own; stopped, and its end awaited, afterwards."""
    runner = threading.Thread(target=d.run, name="maild-daemon")
    runner.start()
    try:
        yield runner
    finally:
        d.stop.set()
        runner.join(timeout=HANG_GUARD)
    assert not runner.is_alive(), "the daemon did not stop when asked"


def restart_before(monkeypatch: pytest.MonkeyPatch, server: PrivateDovecot, command: str, calls: Collection[int],
                   before: Callable[[], None] = lambda: None) -> list[int]:
    """Restart ``server`` just before the daemon's ``calls``-th uses of ``IMAPClient.<command>`` (counted
    from 1, in threads other than the test's own); ``before`` runs first. Returns the calls it restarted at."""
    original = getattr(IMAPClient, command)
    count = itertools.count(1)
    restarted: list[int] = []

    def restarting(client: IMAPClient, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            call = next(count)
            if call in calls:
                before()
                server.restart()
                restarted.append(call)
        return original(client, *args, **kwargs)

    monkeypatch.setattr(IMAPClient, command, restarting)
    return restarted


def recorded(url: str) -> int:
    count: int = db_rows(url, "SELECT COUNT(*) FROM messages")[0][0]
    return count


def poll_errors(d: Daemon) -> float:
    """How often the daemon found its mailbox unavailable when it went to read it."""
    return d.metrics.registry.get_sample_value("maild_mailbox_errors_total", {"operation": "poll"}) or 0.0


def wait_drained(url: str, account: ImapAccount, total: int) -> None:
    """Until ``total`` messages are recorded, all in Processed, and no reply waits to be sent."""
    assert wait_until(lambda: recorded(url) == total, HANG_GUARD, 0.2), recorded(url)
    processed = {"INBOX": 0, "Processed": total, "Quarantine": 0}
    assert wait_until(lambda: folder_counts(account) == processed, HANG_GUARD, 0.2), folder_counts(account)
    unsent = "SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')"
    assert wait_until(lambda: db_rows(url, unsent)[0][0] == 0, HANG_GUARD, 0.2)


def check_once(url: str, samples: list[Sample], smtp: SmtpCapture) -> None:
    """Each message recorded once with its ticket; one reply each where one is due, none sent twice."""
    check_tickets(url, len(samples))
    check_replies(samples, url, smtp)
    assert duplicates(smtp.messages) == {}


@pytest.mark.parametrize("command", ["login", "select_folder"])
def test_dovecot_down_at_start_then_restarted_while_the_daemon_connects(
        tmp_path: Path, private_dovecot: PrivateDovecot, smtp_server: SmtpCapture, monkeypatch: pytest.MonkeyPatch,
        command: str) -> None:
    """Nothing listens when the daemon starts; once Dovecot is up, it restarts again just before the LOGIN
    (or the SELECT) of the first connection that gets through. The daemon retries until it drains."""
    account = private_dovecot.new_account()
    samples = corpus_mix(40, tag=f"connect-{command}")
    seed_imap(account, [s.raw for s in samples])
    url = sqlite_url(tmp_path)
    _, d = daemon(config_for(tmp_path, account, smtp_server, url))
    private_dovecot.stop()
    restarts = restart_before(monkeypatch, private_dovecot, command, calls={1})
    with running(d) as runner:
        assert wait_until(lambda: poll_errors(d) > 0, HANG_GUARD)  # it went to read, and nobody answered
        private_dovecot.start()
        wait_drained(url, account, len(samples))
        assert restarts == [1]
        assert runner.is_alive()
    check_once(url, samples, smtp_server)


def test_dovecot_restarted_while_the_daemon_idles(tmp_path: Path, private_dovecot: PrivateDovecot,
                                                  smtp_server: SmtpCapture) -> None:
    """The daemon's IDLE, as Dovecot shows it, ends with the server; the daemon is back in IDLE on the
    new one and takes the mail delivered after the restart."""
    account = private_dovecot.new_account()
    before, after = corpus_mix(20, tag="idle-before"), corpus_mix(20, tag="idle-after")
    url = sqlite_url(tmp_path)
    _, d = daemon(config_for(tmp_path, account, smtp_server, url))
    with running(d) as runner:
        seed_imap(account, [s.raw for s in before])
        wait_drained(url, account, len(before))
        assert wait_until(lambda: private_dovecot.idling(account), HANG_GUARD, 0.1)
        old_master = private_dovecot.pid()
        private_dovecot.restart()
        assert private_dovecot.pid() != old_master
        assert wait_until(lambda: private_dovecot.idling(account), HANG_GUARD, 0.1)  # reconnected, idling again
        seed_imap(account, [s.raw for s in after])
        wait_drained(url, account, len(before) + len(after))
        assert runner.is_alive()
    check_once(url, before + after, smtp_server)


def test_dovecot_restarted_twice_while_the_daemon_drains_a_backlog(
        tmp_path: Path, private_dovecot: PrivateDovecot, smtp_server: SmtpCapture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarts just before a FETCH: the first in the first pass, with batches recorded and none moved
    out; the second in the next pass, which fetches those again, after its first move of MOVE_EVERY."""
    account = private_dovecot.new_account()
    total = MOVE_EVERY + 3 * BATCH
    samples = corpus_mix(total, tag="drain")
    seed_imap(account, [s.raw for s in samples])
    url = sqlite_url(tmp_path)
    _, d = daemon(config_for(tmp_path, account, smtp_server, url))
    seen: list[tuple[int, dict[str, int]]] = []
    # The 5th FETCH asks for the third batch's sizes; the next pass begins at the 6th, and its 15th
    # (the 20th in all) asks for its eighth batch's, MOVE_EVERY + 2 * BATCH messages into the pass.
    restarts = restart_before(monkeypatch, private_dovecot, "fetch", calls={5, 20},
                              before=lambda: seen.append((recorded(url), folder_counts(account))))
    with running(d) as runner:
        wait_drained(url, account, total)
        assert restarts == [5, 20]
        assert runner.is_alive()
    (first_count, first_folders), (_, second_folders) = seen
    assert 0 < first_count < total and first_folders["Processed"] == 0
    assert second_folders["Processed"] >= MOVE_EVERY and second_folders["INBOX"] > 0
    check_once(url, samples, smtp_server)
