"""Faults without side effects, against the real servers.

What must hold: a relay that refuses some replies for now delays those alone,
never the others, and every reply still arrives exactly once; a database or a
disk that fails after the SMTP server accepted a reply never makes a living
sender send it again, nor leaves the rest of its claim to a lease; a database
outage during intake quarantines nothing. The backoff is driven by the test's
clock: nothing waits for minutes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from maild.daemon.outbox.journal import open_journal
from maild.daemon.outbox.sender import Backoff, OutboxSender
from maild.daemon.outbox.transport import SmtpTransport
from maild.records import OutboxState
from maild.settings import Limits, Smtp
from maild.store import Store
from tests.daemon_kit import FakeClock, classify_reply
from tests.servers import SmtpCapture
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
