"""The sender loop over a real SQLite store, with a fake transport and a settable clock.

What it must keep: every reply is marked sent in its own commit right after
its own 250 (a crash then re-sends at most the reply in hand), a slow server
never lets a lease run out under a reply being sent, and a down server
defers the rest of the batch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maild.daemon.outbox.sender import LEASE_SECONDS, SENDER_RETRY_POLL, SHORTEST_WAIT, Backoff, OutboxSender
from maild.errors import StoreError, TransportDeferred, TransportError, TransportUnavailable
from maild.mail.maildir import MaildirSink, file_name
from maild.ops.digest import build_digest
from maild.records import OutboxState, OutgoingMail
from maild.settings import Limits, Smtp
from maild.store import Store
from tests.daemon_kit import FakeClock
from tests.factories import settings

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


class Transport:
    """Records what it sends; ``before_send`` runs first and may raise or move the clock."""

    def __init__(self, before_send: Callable[[OutgoingMail], None] = lambda mail: None) -> None:
        self.sent: list[str] = []
        self.first_attempts: list[bool] = []
        self.before_send = before_send

    def send(self, mail: OutgoingMail, meanwhile: Callable[[], None] | None = None) -> None:
        if meanwhile is not None:
            meanwhile()
        self.first_attempts.append(mail.first_attempt)
        self.before_send(mail)
        self.sent.append(mail.message_id)

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/maild.db") as opened:
        yield opened


def queue(store: Store, count: int) -> list[str]:
    """``count`` replies in the outbox (a digest each: no brake applies), oldest first."""
    ids = [f"<digest-{n}@servizi.example.it>" for n in range(count)]
    for n, mid in enumerate(ids):
        data = f"Message-ID: {mid}\r\n\r\nx\r\n".encode()
        mail = OutgoingMail("digest", mid, "", (f"op{n}@ateneo.example.it",), data)
        assert store.record_digest(f"p{n}", NOW, (mail,))
    return ids


def sender(store: Store, transport: Transport, clock: FakeClock, owner: str = "host:1") -> OutboxSender:
    return OutboxSender(store, transport, clock, Limits(), owner)


def states(store: Store) -> dict[str, OutboxState]:
    return {o.message_id: o.state for o in store.outbox()}


def test_each_reply_is_marked_sent_before_the_next_one_leaves(store: Store) -> None:
    ids = queue(store, 5)

    def check(mail: OutgoingMail) -> None:
        done = states(store)
        assert [done[m] for m in transport.sent] == [OutboxState.SENT] * len(transport.sent)
        assert done[mail.message_id] is OutboxState.SENDING

    transport = Transport(check)
    report = sender(store, transport, FakeClock(NOW)).drain()
    assert (report.sent, report.deferred, report.failed) == (5, 0, 0)
    assert transport.sent == ids
    assert set(states(store).values()) == {OutboxState.SENT}
    assert [e.kind for e in store.recent_events(100)].count("sent") == 5


def test_a_slow_server_gets_the_rest_of_the_batch_under_a_fresh_lease(store: Store) -> None:
    ids = queue(store, 6)
    clock = FakeClock(NOW)
    other = Transport()
    other_sender = sender(store, other, clock, owner="elsewhere:2")

    def slow(mail: OutgoingMail) -> None:
        clock.advance(timedelta(seconds=LEASE_SECONDS * 0.3))
        # Another daemon draining meanwhile finds nothing to steal: no lease ever ran out.
        assert other_sender.drain().sent == 0

    transport = Transport(slow)
    report = sender(store, transport, clock).drain()
    assert report.sent == 6 and transport.sent == ids and other.sent == []
    attempts = {o.message_id: o.attempts for o in store.outbox()}
    assert [attempts[m] for m in ids] == [1] * 6  # two sent per lease; the rest handed back untried, not counted
    kinds = [e.kind for e in store.recent_events(100)]
    assert kinds.count("sent") == 6 and "send_failed" not in kinds


def test_a_down_server_defers_the_rest_and_a_refusal_fails_one(store: Store) -> None:
    ids = queue(store, 4)

    def flaky(mail: OutgoingMail) -> None:
        if mail.message_id == ids[1]:
            raise TransportError("550 5.1.1 no such user")
        if mail.message_id == ids[2]:
            raise TransportUnavailable("connection refused")

    transport = Transport(flaky)
    report = sender(store, transport, FakeClock(NOW)).drain()
    assert (report.sent, report.deferred, report.failed) == (1, 2, 1)
    done = states(store)
    assert [done[m] for m in ids] == [OutboxState.SENT, OutboxState.FAILED, OutboxState.PENDING,
                                      OutboxState.PENDING]
    tried, untried = sorted(store.outbox(OutboxState.PENDING), key=lambda o: o.id)
    assert (tried.attempts, tried.last_error) == (1, "connection refused")
    assert (untried.attempts, untried.last_error) == (0, None)  # never tried: it waits with the server
    assert untried.next_attempt_at == tried.next_attempt_at > NOW


def test_only_a_reply_claimed_for_the_first_time_is_sent_as_a_first_attempt(store: Store) -> None:
    ids = queue(store, 2)
    clock = FakeClock(NOW)

    def down_once(mail: OutgoingMail) -> None:
        if mail.message_id == ids[1] and transport.first_attempts == [True, True]:
            raise TransportUnavailable("connection refused")

    transport = Transport(down_once)
    assert sender(store, transport, clock).drain().deferred == 1
    clock.advance(timedelta(hours=1))
    assert sender(store, transport, clock).drain().sent == 1
    assert transport.sent == ids
    assert transport.first_attempts == [True, True, False]


@pytest.mark.parametrize(("read_meanwhile", "recovery"), [(False, "lease expired"), (True, "lease expired"),
                                                           (True, "lease released")])
def test_a_reply_written_then_lost_to_a_crash_leaves_one_copy_in_the_maildir(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_meanwhile: bool, recovery: str,
) -> None:
    (mid,) = queue(store, 1)
    sink = MaildirSink(tmp_path / "sent", fsync=False)
    name = file_name(OutgoingMail("digest", mid, "", ("op0@ateneo.example.it",), b""))
    mark_sent = store.mark_sent

    def crash_once(outbox_id: int, now: datetime) -> bool:
        monkeypatch.setattr(store, "mark_sent", mark_sent)
        raise StoreError("disk I/O error")  # the daemon dies here: written, never marked sent

    monkeypatch.setattr(store, "mark_sent", crash_once)
    clock = FakeClock(NOW)
    with pytest.raises(StoreError):
        OutboxSender(store, sink, clock, Limits(), "host:1").drain()
    assert os.listdir(sink.path / "new") == [name]
    assert states(store) == {mid: OutboxState.SENDING}
    if read_meanwhile:  # a mail reader opens the sent folder before the daemon is back
        os.rename(sink.path / "new" / name, sink.path / "cur" / f"{name}:2,S")
    if recovery == "lease expired":
        clock.advance(timedelta(seconds=LEASE_SECONDS + 1))
    else:
        assert store.release_leases(["host:1"], clock.now()) == 1

    assert OutboxSender(store, sink, clock, Limits(), "host:2").drain().sent == 1
    copies = sorted(os.listdir(sink.path / "new")) + sorted(os.listdir(sink.path / "cur"))
    assert copies == [f"{name}:2,S" if read_meanwhile else name]
    (outbox,) = store.outbox()
    assert (outbox.state, outbox.attempts) == (OutboxState.SENT, 2)


def test_a_reply_refused_for_now_waits_alone_by_its_own_backoff(store: Store) -> None:
    ids = queue(store, 4)

    def greylist(mail: OutgoingMail) -> None:
        if mail.message_id == ids[1]:
            raise TransportDeferred("451 4.7.1 greylisted")

    transport = Transport(greylist)
    clock = FakeClock(NOW)
    backoff = replace(Backoff.of(Smtp()), jitter=lambda: 0.0)  # half the delay: the earliest
    first = OutboxSender(store, transport, clock, Limits(), "host:1", backoff=backoff).drain()
    assert (first.sent, first.deferred, first.failed) == (3, 1, 0)
    assert transport.sent == [ids[0], ids[2], ids[3]]  # the others went on
    (waiting,) = store.outbox(OutboxState.PENDING)
    assert (waiting.attempts, waiting.next_attempt_at) == (1, NOW + timedelta(seconds=0.5))  # half of 1 s
    clock.advance(timedelta(seconds=0.5))
    assert OutboxSender(store, transport, clock, Limits(), "host:1", backoff=backoff).drain().deferred == 1
    (waiting,) = store.outbox(OutboxState.PENDING)
    assert waiting.next_attempt_at == NOW + timedelta(seconds=0.5 + 0.75)  # its own second wait: half as long again


def test_backoff_is_jittered_within_half_and_all_of_the_capped_delay() -> None:
    for jitter, expected in ((0.0, 0.5), (0.999, 0.9995)):
        backoff = Backoff(jitter=functools.partial(float, jitter))  # the defaults: 1 s, growing by half, 30 min
        assert backoff.next_try(NOW, 1) == NOW + timedelta(seconds=1) * expected
        assert backoff.next_try(NOW, 2) == NOW + timedelta(seconds=1.5) * expected
        assert backoff.next_try(NOW, 3) == NOW + timedelta(seconds=2.25) * expected
        assert backoff.next_try(NOW, 19) == NOW + timedelta(seconds=1.5 ** 18) * expected  # about 25 min
        assert backoff.next_try(NOW, 20) == NOW + timedelta(minutes=30) * expected  # the cap, from then on
        assert backoff.next_try(NOW, 10_000) == NOW + timedelta(minutes=30) * expected


def test_backoff_starts_from_the_configured_first_retry() -> None:
    backoff = Backoff.of(Smtp(first_retry_seconds=20.0, give_up_after_hours=6.0))
    assert (backoff.base, backoff.give_up_after) == (timedelta(seconds=20), timedelta(hours=6))
    early, late = (replace(backoff, jitter=functools.partial(float, j)) for j in (0.0, 0.999))
    assert early.next_try(NOW, 2) == NOW + timedelta(seconds=15) and late.next_try(NOW, 2) < NOW + timedelta(seconds=30)


def test_a_reply_refused_for_now_at_every_try_is_retried_ever_more_rarely_then_given_up(store: Store) -> None:
    queue(store, 1)

    def always(mail: OutgoingMail) -> None:
        raise TransportDeferred("451 4.7.1 greylisted")

    clock = FakeClock(NOW)
    backoff = Backoff(give_up_after=timedelta(hours=2), jitter=lambda: 0.5)  # three quarters of each delay
    waits: list[timedelta] = []
    while OutboxSender(store, Transport(always), clock, Limits(), "host:1", backoff=backoff).drain().deferred:
        (waiting,) = store.outbox(OutboxState.PENDING)
        waits.append(waiting.next_attempt_at - clock.now())
        clock.current = waiting.next_attempt_at  # tried again exactly when due
    expected = [timedelta(seconds=min(1.5 ** k, 1800)) * 0.75 for k in range(len(waits))]
    assert waits == expected and waits[-1] == timedelta(minutes=30) * 0.75  # capped well before the give-up
    # 19 growing waits, 3 at the cap; given up at the first try once the reply is 2 h old:
    assert len(waits) == 22 and sum(waits[:-1], timedelta()) < timedelta(hours=2) <= sum(waits, timedelta())
    (outbox,) = store.outbox()
    assert (outbox.state, outbox.attempts) == (OutboxState.FAILED, 23)
    assert (outbox.last_error or "").startswith("given up after 2 h and 23 attempt")


def test_a_reply_refused_for_now_too_long_is_given_up_and_shown_in_the_digest(store: Store) -> None:
    (mid,) = queue(store, 1)

    def always(mail: OutgoingMail) -> None:
        raise TransportDeferred("451 4.3.0 try again later")

    clock = FakeClock(NOW)
    backoff = Backoff(give_up_after=timedelta(hours=2))
    drained = [OutboxSender(store, Transport(always), clock, Limits(), "host:1", backoff=backoff).drain()]
    while drained[-1].deferred:
        clock.advance(backoff.cap)
        drained.append(OutboxSender(store, Transport(always), clock, Limits(), "host:1", backoff=backoff).drain())
    assert drained[-1].failed == 1 and len(drained) == 5  # tries at 0, 30, 60, 90 min; given up at 120
    (outbox,) = store.outbox()
    assert outbox.state is OutboxState.FAILED
    assert (outbox.last_error or "").startswith("given up after 2 h and 5 attempt")
    assert "given_up" in [e.kind for e in store.recent_events(100)]
    digest = build_digest(store, settings(), clock.now() + timedelta(minutes=1), NOW)
    assert [(line.message_id, line.reason[:13]) for line in digest.failed] == [(mid, "given up afte")]


def test_an_idle_sender_sleeps_until_the_first_retry_is_due_and_no_longer_than_the_poll(store: Store) -> None:
    clock = FakeClock(NOW)
    backoff = replace(Backoff.of(Smtp()), jitter=lambda: 0.0)  # the first retry 0.5 s after the refusal
    idle = OutboxSender(store, Transport(), clock, Limits(), "host:1", backoff=backoff)
    assert idle.idle_wait() == SENDER_RETRY_POLL  # nothing waits
    ids = queue(store, 2)

    def greylist(mail: OutgoingMail) -> None:
        if mail.message_id == ids[1]:
            raise TransportDeferred("451 4.7.1 greylisted")

    refused = OutboxSender(store, Transport(greylist), clock, Limits(), "host:1", backoff=backoff)
    assert refused.drain().deferred == 1
    assert refused.idle_wait() == pytest.approx(0.5)  # not the poll's 5 s
    clock.advance(timedelta(seconds=2))
    assert refused.idle_wait() == SHORTEST_WAIT  # due already: soon, but no busy loop
    clock.advance(timedelta(seconds=1))
    assert refused.drain().deferred == 1  # its second wait: 0.75 s
    assert refused.idle_wait() == pytest.approx(0.75)
