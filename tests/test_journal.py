"""Sent marks in a journal: folded before any claim, never lost to a crash, never folded twice.

What must hold: a reply whose mark is in a journal is never sent again,
whether its sender stopped cleanly, was killed, or is stuck with its leases
expired; a mark cut short by a power cut is not a mark; folding twice changes
nothing. Over a real SQLite store (and PostgreSQL for the batch mark).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from maild.daemon.outbox.journal import SentJournal, fold_journals
from maild.daemon.outbox.sender import LEASE_SECONDS, OutboxSender, is_dead
from maild.records import EventKind, OutboxState, OutgoingMail
from maild.settings import Limits
from maild.store import Store
from tests.daemon_kit import FakeClock
from tests.servers import wait_until
from tests.test_sender import NOW, Transport, queue, states


class Crash(BaseException):
    """A sender killed between two replies: nothing after it runs, no ``finally`` of ours folds."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/maild.db") as opened:
        yield opened


def dead_owner() -> str:
    """The lease owner of a sender of this host that no longer runs."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return f"{socket.gethostname()}:{done.stdout.strip()}"


def journaled_sender(store: Store, transport: Transport, clock: FakeClock, owner: str) -> OutboxSender:
    assert store.journal_dir is not None
    return OutboxSender(store, transport, clock, Limits(), owner, journal=SentJournal(store.journal_dir, owner))


def journal_ids(store: Store) -> set[int]:
    assert store.journal_dir is not None
    return {int(line) for path in store.journal_dir.glob("sent-*.journal") for line in path.read_text().split()}


def outbox_ids(store: Store) -> dict[str, int]:
    return {o.message_id: o.id for o in store.outbox()}


def outbox_events(store: Store) -> list[tuple[int, str, str]]:
    """(outbox id, kind, data) of every event recording a reply's acceptance, in order."""
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT outbox_id, kind, data FROM events WHERE kind IN ('sent', 'acknowledged') "
                                 "ORDER BY id"))
        return [(row[0], row[1], str(row[2])) for row in rows]


def hold(store: Store, outbox_id: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET state = 'held' WHERE id = :oid"), {"oid": outbox_id})


def test_only_a_sqlite_file_has_a_journal_folder(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/x.db") as on_file, Store.open("sqlite://") as in_memory:
        assert on_file.journal_dir == tmp_path / "x.db-sent"
        assert in_memory.journal_dir is None


def test_each_mark_is_journaled_before_the_next_reply_leaves_and_folded_after_the_drain(store: Store) -> None:
    ids = queue(store, 5)
    by_id = outbox_ids(store)

    def check(mail: OutgoingMail) -> None:
        earlier = {by_id[m] for m in transport.sent}
        assert journal_ids(store) >= earlier  # every reply before this one is marked
        assert states(store)[mail.message_id] is OutboxState.SENDING

    transport = Transport(check)
    report = journaled_sender(store, transport, FakeClock(NOW), "host:1").drain()
    assert report.sent == 5 and transport.sent == ids
    assert set(states(store).values()) == {OutboxState.SENT}
    assert journal_ids(store) == set()  # folded, then emptied
    assert [kind for _, kind, _ in outbox_events(store)] == [EventKind.SENT.value] * 5


def test_a_killed_sender_s_journaled_replies_are_not_sent_again(store: Store) -> None:
    ids = queue(store, 5)
    owner = dead_owner()

    def crash_on_fourth(mail: OutgoingMail) -> None:
        if mail.message_id == ids[3]:
            raise Crash

    first = Transport(crash_on_fourth)
    with pytest.raises(Crash):
        journaled_sender(store, first, FakeClock(NOW), owner).drain()
    assert first.sent == ids[:3]
    assert set(states(store).values()) == {OutboxState.SENDING}  # nothing folded: the process "died"

    restarted = Transport()
    clock = FakeClock(NOW + timedelta(seconds=5))  # long before the dead sender's lease expires
    after = OutboxSender(store, restarted, clock, Limits(), "host:2")
    assert after.recover() == 2  # the journaled three are sent; only the other two go back
    after.drain()
    assert restarted.sent == ids[3:]
    assert set(states(store).values()) == {OutboxState.SENT}
    assert store.journal_dir is not None and list(store.journal_dir.iterdir()) == []  # the dead one's is gone


@pytest.mark.parametrize("rescuer_journals", [True, False], ids=["journaling-rescuer", "committing-rescuer"])
def test_a_stuck_sender_s_marks_are_folded_before_its_expired_leases_are_taken(store: Store,
                                                                               rescuer_journals: bool) -> None:
    ids = queue(store, 4)
    stuck_owner = f"{socket.gethostname()}:1"  # pid 1 runs: the owner counts as alive

    def stick_on_third(mail: OutgoingMail) -> None:
        if mail.message_id == ids[2]:
            raise Crash

    with pytest.raises(Crash):
        journaled_sender(store, Transport(stick_on_third), FakeClock(NOW), stuck_owner).drain()
    other = Transport()
    later = FakeClock(NOW + timedelta(seconds=LEASE_SECONDS + 1))
    rescuer = (journaled_sender(store, other, later, "host:2") if rescuer_journals
               else OutboxSender(store, other, later, Limits(), "host:2"))
    rescuer.drain()
    if rescuer.journal is not None:
        rescuer.journal.close()  # empty: removed
    assert other.sent == ids[2:]  # the two journaled by the stuck sender stay sent
    assert set(states(store).values()) == {OutboxState.SENT}
    assert store.journal_dir is not None
    assert [p.name for p in store.journal_dir.iterdir()] == [f"sent-{socket.gethostname()}%3A1.journal"]


def test_a_line_cut_short_is_not_a_mark(store: Store) -> None:
    queue(store, 3)
    first, second, third = sorted(outbox_ids(store).values())
    assert store.journal_dir is not None
    store.journal_dir.mkdir()
    (store.journal_dir / "sent-gone%3A1.journal").write_bytes(f"{first}\n{second}\n{third}".encode())
    assert fold_journals(store.journal_dir, store, NOW, lambda owner: False) == 2
    assert sorted(o.state.value for o in store.outbox()) == ["pending", "sent", "sent"]


def test_folding_twice_marks_once_and_leaves_held_rows_alone(store: Store) -> None:
    queue(store, 3)
    first, second, third = sorted(outbox_ids(store).values())
    hold(store, third)
    assert store.mark_sent_many([first, second, third], NOW) == 2
    assert store.mark_sent_many([first, second, third], NOW) == 0
    assert [o.state for o in sorted(store.outbox(), key=lambda o: o.id)] == [
        OutboxState.SENT, OutboxState.SENT, OutboxState.HELD]
    assert [oid for oid, _, _ in outbox_events(store)] == [first, second]


def test_the_batch_mark_writes_what_marking_one_by_one_writes_on_postgresql(pg_url: str, pg_url_2: str) -> None:
    with Store.open(pg_url) as one_by_one, Store.open(pg_url_2) as batched:
        for target in (one_by_one, batched):
            queue(target, 4)
        for oid in sorted(outbox_ids(one_by_one).values()):
            one_by_one.mark_sent(oid, NOW)
        assert batched.mark_sent_many(sorted(outbox_ids(batched).values()), NOW) == 4
        assert batched.journal_dir is None

        assert outbox_events(batched) == outbox_events(one_by_one)
        assert states(batched) == states(one_by_one) == dict.fromkeys(states(batched), OutboxState.SENT)


def test_a_dead_sender_s_journal_is_removed_once_folded_and_a_live_one_s_kept(store: Store) -> None:
    queue(store, 2)
    first, second = sorted(outbox_ids(store).values())
    dead, alive = dead_owner(), f"{socket.gethostname()}:1"
    assert store.journal_dir is not None
    for owner, oid in ((dead, first), (alive, second)):
        SentJournal(store.journal_dir, owner).record(oid)
    assert fold_journals(store.journal_dir, store, NOW, is_dead) == 2
    assert [p.name for p in store.journal_dir.iterdir()] == [f"sent-{socket.gethostname()}%3A1.journal"]


def test_a_sender_that_exited_but_was_not_reaped_yet_counts_as_dead() -> None:
    """A killed daemon's sender exits at once but stays a zombie until init reaps it (seconds on some
    machines): a restarted daemon must still fold its journal and release its leases at once."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = f"{socket.gethostname()}:{zombie.pid}"
    try:
        assert wait_until(lambda: Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z",
                          30)
        os.kill(zombie.pid, 0)  # still there for the kernel
        assert is_dead(owner)
    finally:
        zombie.wait()
    assert is_dead(owner)
    assert not is_dead(f"{socket.gethostname()}:1") and not is_dead(f"{socket.gethostname()}:{os.getpid()}")
