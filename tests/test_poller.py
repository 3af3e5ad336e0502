"""ImapSource against the real Dovecot, and its backoff logic with a fake clock."""

from __future__ import annotations

import itertools
import random
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextlib import suppress as contextlib_suppress
from typing import Any

import pytest
from imapclient.exceptions import LoginError

from maild.daemon.wiring import make_source
from maild.errors import SourceError, SourceUnavailable
from maild.poller import IDLE_RENEW, Backoff, ImapSource, ensure_folders, open_client
from maild.settings import Mailbox
from maild.sources import Incoming
from tests.factories import settings
from tests.fakes import FakeTime
from tests.servers import (
    ImapAccount,
    PrivateDovecot,
    ServerEnv,
    append_one,
    folder_counts,
    folder_uids,
    free_port,
    make_message,
)

Seed = Callable[[ImapAccount, Sequence[bytes]], None]
HANG_GUARD = 30.0
"""Seconds a wait may take before the test fails instead of hanging; never a speed claim."""


def drain(source: ImapSource, max_bytes: int = 10 * 1024 * 1024) -> list[Incoming]:
    return list(source.fetch(max_bytes))


# ---------------------------------------------------------------- fetch and filing


@pytest.mark.servers
def test_fetch_returns_every_seeded_message_in_order_and_files_them(
    imap_account: ImapAccount, seed_imap: Seed
) -> None:
    messages = [make_message(i) for i in range(620)]
    seed_imap(imap_account, messages)
    source = ImapSource(imap_account.mailbox(batch_size=128))
    try:
        items = drain(source)
        assert [item.raw for item in items] == messages
        assert [item.size for item in items] == [len(m) for m in messages]
        uids = folder_uids(imap_account, "INBOX")
        state = str(source.uidvalidity)
        assert [item.source_id for item in items] == [f"{state}:{uid}" for uid in uids]
        assert {item.folder_state for item in items} == {state}

        for item in items[:500]:
            source.mark_processed(item)
        for item in items[500:]:
            source.quarantine(item)
        assert drain(source) == []
    finally:
        source.close()
    assert folder_counts(imap_account) == {"INBOX": 0, "Processed": 500, "Quarantine": 120}


@pytest.mark.servers
def test_fetch_peeks_so_filed_messages_stay_unseen(imap_account: ImapAccount, seed_imap: Seed) -> None:
    seed_imap(imap_account, [make_message(i) for i in range(3)])
    source = ImapSource(imap_account.mailbox())
    try:
        for item in drain(source):
            source.mark_processed(item)
    finally:
        source.close()
    with imap_account.connect() as client:
        client.select_folder("Processed", readonly=True)
        flags = client.get_flags(client.search(["ALL"]))
    assert len(flags) == 3
    assert all(b"\\Seen" not in f for f in flags.values())


@pytest.mark.servers
def test_oversize_message_is_listed_but_not_downloaded(imap_account: ImapAccount, seed_imap: Seed) -> None:
    small, big = make_message(1), make_message(2, body_size=200_000)
    seed_imap(imap_account, [small, big, small])
    source = ImapSource(imap_account.mailbox())
    try:
        items = drain(source, max_bytes=100_000)
    finally:
        source.close()
    expected = [(small, len(small)), (None, len(big)), (small, len(small))]
    assert [(item.raw, item.size) for item in items] == expected


@pytest.mark.servers
def test_mark_processed_twice_is_harmless(imap_account: ImapAccount, seed_imap: Seed) -> None:
    seed_imap(imap_account, [make_message(1)])
    source = ImapSource(imap_account.mailbox())
    try:
        (item,) = drain(source)
        source.mark_processed(item)
        source.mark_processed(item)
        source.quarantine(item)
    finally:
        source.close()
    assert folder_counts(imap_account) == {"INBOX": 0, "Processed": 1, "Quarantine": 0}


@pytest.mark.servers
def test_copy_delete_expunge_fallback_files_like_move(imap_account: ImapAccount, seed_imap: Seed) -> None:
    seed_imap(imap_account, [make_message(i) for i in range(4)])
    source = ImapSource(imap_account.mailbox(), use_move=False)
    try:
        items = drain(source)
        source.mark_processed(items[0])
        source.quarantine(items[1])
        remaining = drain(source)
    finally:
        source.close()
    assert [item.source_id for item in remaining] == [item.source_id for item in items[2:]]
    assert folder_counts(imap_account) == {"INBOX": 2, "Processed": 1, "Quarantine": 1}


@pytest.mark.servers
def test_uidvalidity_is_recorded_in_every_source_id(imap_account: ImapAccount, seed_imap: Seed) -> None:
    seed_imap(imap_account, [make_message(1)])
    with imap_account.connect() as client:
        uidvalidity = client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"]
    source = ImapSource(imap_account.mailbox())
    try:
        (item,) = drain(source)
    finally:
        source.close()
    assert source.uidvalidity == uidvalidity
    assert item.folder_state == str(uidvalidity)
    assert item.source_id.startswith(f"{uidvalidity}:")


@pytest.mark.servers
def test_missing_folders_are_created(imap_account: ImapAccount) -> None:
    box = imap_account.mailbox(processed_folder="Archivio/Evase", quarantine_folder="Sospese")
    source = ImapSource(box)
    try:
        assert drain(source) == []
    finally:
        source.close()
    with imap_account.connect() as client:
        names = {folder[2] for folder in client.list_folders()}
        ensure_folders(client, ["Sospese"])  # already there: no error
    assert {"Archivio/Evase", "Sospese"} <= names


# ---------------------------------------------------------------- TLS and login


@pytest.mark.servers
@pytest.mark.parametrize("tls", ["ssl", "starttls", "none"])
def test_each_tls_mode_connects(imap_account: ImapAccount, seed_imap: Seed, tls: str) -> None:
    seed_imap(imap_account, [make_message(1)])
    port = imap_account.imaps_port if tls == "ssl" else imap_account.port
    source = ImapSource(imap_account.mailbox(tls=tls, port=port))
    try:
        assert len(drain(source)) == 1
    finally:
        source.close()


@pytest.mark.servers
def test_untrusted_certificate_is_a_permanent_error(imap_account: ImapAccount) -> None:
    source = ImapSource(imap_account.mailbox(tls="ssl", port=imap_account.imaps_port, ca_file=None))
    with pytest.raises(SourceError, match="certificate") as caught:
        drain(source)
    assert not isinstance(caught.value, SourceUnavailable)


@pytest.mark.servers
def test_wrong_password_is_a_permanent_error(imap_account: ImapAccount) -> None:
    source = ImapSource(imap_account.mailbox(password="wrong"))
    with pytest.raises(SourceError, match="login refused") as caught:
        drain(source)
    assert not isinstance(caught.value, SourceUnavailable)
    assert "wrong" not in str(caught.value)


def test_nothing_listening_is_unavailable() -> None:
    box = Mailbox(kind="imap", port=free_port(), tls="none", username="u@example.test", password="p")
    source = ImapSource(box, timeout=5)
    with pytest.raises(SourceUnavailable):
        drain(source)
    assert not source.connected


@contextmanager
def greeting_server(lines: Sequence[bytes]) -> Iterator[int]:
    """A server that greets each connection with ``lines`` (then closes it), as Dovecot does while it stops."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"".join(lines))
                with contextlib_suppress(OSError):
                    conn.recv(4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        listener.close()
        thread.join(timeout=10)


@pytest.mark.parametrize("greeting", [b"* BYE Server shutting down.\r\n",
                                      b"* OK ready\r\n* BYE Server shutting down.\r\n"])
def test_a_server_that_is_shutting_down_is_unavailable_not_a_configuration_error(greeting: bytes) -> None:
    """Dovecot greets with BYE while it stops: reconnect later, never stop the daemon."""
    with greeting_server([greeting]) as port:
        box = Mailbox(kind="imap", port=port, tls="none", username="u@example.test", password="p")
        source = ImapSource(box, timeout=5)
        with pytest.raises(SourceUnavailable):
            drain(source)
        assert not source.connected


@contextmanager
def stopping_at_login(answer: bytes) -> Iterator[int]:
    """An IMAP server that greets, lists its capabilities, and gives a LOGIN ``answer`` before it closes the
    connection, as a Dovecot that begins to stop between the greeting and the login does."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib_suppress(OSError), listener.accept()[0] as conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK ready\r\n")
            for line in lines:
                tag, _, command = line.partition(b" ")
                if command.upper().startswith(b"LOGIN"):
                    conn.sendall(answer)
                    return
                conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=10)


@pytest.mark.parametrize("answer", [b"* BYE Shutting down\r\n", b""], ids=["bye", "closed"])
def test_a_server_that_stops_during_login_is_unavailable_not_a_configuration_error(answer: bytes) -> None:
    """Dovecot says BYE to a LOGIN in hand, or its login process is gone, while it stops: the credentials
    were never judged, so the daemon reconnects later instead of stopping."""
    with stopping_at_login(answer) as port:
        box = Mailbox(kind="imap", port=port, tls="none", username="u@example.test", password="p")
        source = ImapSource(box, timeout=5)
        with pytest.raises(SourceUnavailable, match="LOGIN"):
            drain(source)
        assert not source.connected


# ---------------------------------------------------------------- waiting


@pytest.mark.servers
def test_idle_wakes_when_another_connection_appends(imap_account: ImapAccount) -> None:
    calls: list[str] = []
    source = ImapSource(imap_account.mailbox(poll_interval=3600.0),
                        connect=lambda box: _Recorder(open_client(box), calls))
    appender = threading.Timer(0.5, append_one, (imap_account, make_message(7)))
    try:
        assert drain(source) == []
        appender.start()
        assert source.wait(HANG_GUARD) is True
        appender.join()
        (item,) = drain(source)
    finally:
        appender.cancel()
        source.close()
    assert item.raw is not None and b"Subject: seed 7" in item.raw
    assert "idle" in calls


@pytest.mark.servers
def test_wait_returns_at_once_for_mail_that_arrived_since_the_last_fetch(imap_account: ImapAccount) -> None:
    source = ImapSource(imap_account.mailbox(poll_interval=3600.0))
    try:
        assert drain(source) == []
        append_one(imap_account, make_message(1))
        assert source.wait(HANG_GUARD) is True
    finally:
        source.close()


@pytest.mark.servers
def test_wait_times_out_without_new_mail_and_ignores_unfiled_old_mail(
    imap_account: ImapAccount, seed_imap: Seed
) -> None:
    seed_imap(imap_account, [make_message(1)])
    source = ImapSource(imap_account.mailbox())
    try:
        assert len(drain(source)) == 1  # fetched, never filed: no reason to wake again
        assert source.wait(0.5) is False
    finally:
        source.close()


@pytest.mark.servers
def test_polling_notices_mail_when_idle_is_off(imap_account: ImapAccount) -> None:
    calls: list[str] = []
    source = ImapSource(imap_account.mailbox(idle=False, poll_interval=0.2),
                        connect=lambda box: _Recorder(open_client(box), calls))
    appender = threading.Timer(0.5, append_one, (imap_account, make_message(3)))
    try:
        assert drain(source) == []
        appender.start()
        assert source.wait(HANG_GUARD) is True
        appender.join()
        assert len(drain(source)) == 1
    finally:
        appender.cancel()
        source.close()
    assert "idle" not in calls


@pytest.mark.servers
def test_reconnects_after_dovecot_restart(private_dovecot: PrivateDovecot, seed_imap: Seed) -> None:
    imap_account = private_dovecot.new_account()
    seed_imap(imap_account, [make_message(1)])
    source = ImapSource(imap_account.mailbox(), backoff=Backoff(base=0.2, cap=1.0))
    try:
        (first,) = drain(source)
        private_dovecot.restart()
        with pytest.raises(SourceUnavailable):
            source.mark_processed(first)  # the old connection is dead: a transient fault
        assert not source.connected
        assert source.wait(HANG_GUARD) is True  # reconnected
        source.mark_processed(first)
        append_one(imap_account, make_message(2))
        (second,) = drain(source)
    finally:
        source.close()
    assert second.raw is not None and b"Subject: seed 2" in second.raw
    assert folder_counts(imap_account) == {"INBOX": 1, "Processed": 1, "Quarantine": 0}


@pytest.mark.servers
def test_idle_survives_a_dovecot_restart(private_dovecot: PrivateDovecot) -> None:
    imap_account = private_dovecot.new_account()
    source = ImapSource(imap_account.mailbox(poll_interval=3600.0), backoff=Backoff(base=0.2, cap=1.0))

    def restart_then_deliver() -> None:
        private_dovecot.restart()
        append_one(imap_account, make_message(9))

    worker = threading.Timer(0.5, restart_then_deliver)
    found: list[Incoming] = []
    try:
        assert drain(source) == []
        worker.start()
        for _ in range(5):  # woken by the reconnection, then (maybe) by the delivery
            if source.wait(HANG_GUARD):
                found += drain(source)
            if found:
                break
        worker.join()
    finally:
        worker.cancel()
        source.close()
    assert len(found) == 1 and found[0].raw is not None and b"Subject: seed 9" in found[0].raw


# ---------------------------------------------------------------- one IDLE across wait() slices


@contextmanager
def _spied(account: ImapAccount, **options: Any) -> Iterator[tuple[_Spy, ImapSource]]:
    """An IDLE-capable source on ``account`` whose commands a ``_Spy`` records; closed afterwards."""
    spy = _Spy()
    source = ImapSource(account.mailbox(poll_interval=3600.0), connect=spy.connect, **options)
    try:
        yield spy, source
    finally:
        source.close()


@pytest.mark.servers
def test_consecutive_quiet_waits_keep_one_idle_open(imap_account: ImapAccount) -> None:
    with _spied(imap_account) as (spy, source):
        assert drain(source) == []
        spy.sent.clear()
        assert [source.wait(0.5) for _ in range(3)] == [False, False, False]
        assert spy.sent == ["NOOP", "UID SEARCH", "IDLE"]  # one race check, one IDLE, nothing between slices


@pytest.mark.servers
def test_mail_delivered_between_slices_is_reported_through_the_open_idle(imap_account: ImapAccount) -> None:
    with _spied(imap_account) as (spy, source):
        assert drain(source) == []
        assert source.wait(0.5) is False
        spy.sent.clear()
        append_one(imap_account, make_message(5))  # while no wait() runs, the IDLE still open
        assert source.wait(HANG_GUARD) is True
        assert spy.sent == ["DONE"]  # heard on the open IDLE, which is ended for the fetch to come
        (item,) = drain(source)
    assert item.raw is not None and b"Subject: seed 5" in item.raw


@pytest.mark.servers
def test_mail_pending_when_idle_begins_is_reported_by_that_wait(imap_account: ImapAccount) -> None:
    """Mail that lands between the race check and IDLE: Dovecot announces it in the same packet as
    "+ idling". The clock runs out as IDLE is sent, so only a wait that reads what already came
    reports it; listening on the socket would hear it at the next "* OK Still here", minutes later."""
    skew = [0.0]

    def deliver_then_run_out_of_time() -> None:
        append_one(imap_account, make_message(6))
        skew[0] += 3600.0

    spy = _Spy(before_idle=deliver_then_run_out_of_time)
    source = ImapSource(imap_account.mailbox(poll_interval=3600.0), connect=spy.connect,
                        clock=lambda: time.monotonic() + skew[0])
    try:
        assert drain(source) == []
        spy.sent.clear()
        assert source.wait(HANG_GUARD) is True
        assert spy.sent == ["NOOP", "UID SEARCH", "IDLE", "DONE"]
        (item,) = drain(source)
    finally:
        source.close()
    assert item.raw is not None and b"Subject: seed 6" in item.raw


@pytest.mark.servers
def test_a_move_after_a_quiet_wait_ends_the_idle_first(imap_account: ImapAccount, seed_imap: Seed) -> None:
    seed_imap(imap_account, [make_message(1)])
    with _spied(imap_account) as (spy, source):
        (first,) = drain(source)  # fetched, not filed yet
        assert source.wait(0.5) is False
        append_one(imap_account, make_message(2))
        spy.until_server_speaks()  # the EXISTS is on its way to the open IDLE
        spy.sent.clear()
        source.mark_processed(first)
        assert spy.sent == ["DONE", "UID MOVE"]
        spy.sent.clear()
        assert source.wait(HANG_GUARD) is True  # the race check finds what the DONE swallowed
        assert "IDLE" not in spy.sent
        (second,) = drain(source)
    assert second.raw is not None and b"Subject: seed 2" in second.raw
    assert folder_counts(imap_account) == {"INBOX": 1, "Processed": 1, "Quarantine": 0}


@pytest.mark.servers
def test_a_fetch_after_a_quiet_wait_ends_the_idle_first(imap_account: ImapAccount) -> None:
    with _spied(imap_account) as (spy, source):
        assert drain(source) == []
        assert source.wait(0.5) is False
        append_one(imap_account, make_message(3))
        spy.until_server_speaks()
        spy.sent.clear()
        (item,) = drain(source)
        assert spy.sent[:3] == ["DONE", "NOOP", "UID SEARCH"]
        source.quarantine(item)
    assert item.raw is not None and b"Subject: seed 3" in item.raw
    assert folder_counts(imap_account) == {"INBOX": 0, "Processed": 0, "Quarantine": 1}


@pytest.mark.servers
def test_the_idle_is_renewed_after_idle_renew(imap_account: ImapAccount) -> None:
    skew = [0.0]
    with _spied(imap_account, clock=lambda: time.monotonic() + skew[0]) as (spy, source):
        assert drain(source) == []
        assert source.wait(0.5) is False
        skew[0] += IDLE_RENEW - 1.0
        spy.sent.clear()
        assert source.wait(0.5) is False
        assert spy.sent == []  # not yet
        skew[0] += 1.0
        assert source.wait(0.5) is False
        assert spy.sent == ["DONE", "IDLE"]
        spy.sent.clear()
        append_one(imap_account, make_message(4))
        assert source.wait(HANG_GUARD) is True  # the renewed IDLE hears new mail
        assert spy.sent == ["DONE"]


@pytest.mark.servers
def test_close_during_an_open_idle_ends_it_and_logs_out(imap_account: ImapAccount) -> None:
    spy = _Spy()
    source = ImapSource(imap_account.mailbox(poll_interval=3600.0), connect=spy.connect)
    assert drain(source) == []
    assert source.wait(0.5) is False
    spy.sent.clear()
    source.close()
    assert spy.sent == ["DONE", "LOGOUT"]
    assert "shutdown" not in spy.calls  # LOGOUT got its answer: no fallback to closing the socket
    assert not source.connected
    source.close()  # twice is harmless


def _kicked(spy: _Spy, server_env: ServerEnv, account: ImapAccount) -> None:
    _kick(server_env, account)  # Dovecot says BYE to the open IDLE and hangs up


def _vanished(spy: _Spy, server_env: ServerEnv, account: ImapAccount) -> None:
    spy.client().socket().shutdown(socket.SHUT_RDWR)  # gone without a word, as when a peer vanishes


@pytest.mark.servers
@pytest.mark.parametrize("end", [_kicked, _vanished], ids=["bye", "no-bye"])
def test_a_connection_lost_during_an_open_idle_is_reconnected(
    imap_account: ImapAccount, server_env: ServerEnv, end: Callable[[_Spy, ServerEnv, ImapAccount], None],
) -> None:
    with _spied(imap_account, backoff=Backoff(base=0.2, cap=1.0)) as (spy, source):
        assert drain(source) == []
        assert source.wait(0.5) is False
        end(spy, server_env, imap_account)
        assert source.wait(HANG_GUARD) is True  # reconnected, which may mean mail
        assert source.connected and spy.connections == 2
        append_one(imap_account, make_message(8))
        (item,) = drain(source)
    assert item.raw is not None and b"Subject: seed 8" in item.raw


@pytest.mark.servers
def test_the_connection_asks_for_keepalive_probes(imap_account: ImapAccount) -> None:
    with open_client(imap_account.mailbox()) as client:
        sock = client.socket()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60


@pytest.mark.servers
def test_polling_still_checks_at_every_wait(imap_account: ImapAccount) -> None:
    spy = _Spy()
    source = ImapSource(imap_account.mailbox(idle=False, poll_interval=3600.0), connect=spy.connect)
    try:
        assert drain(source) == []
        spy.sent.clear()
        assert [source.wait(0.2) for _ in range(2)] == [False, False]
        assert spy.sent == ["NOOP", "UID SEARCH"] * 4  # on entry and after the sleep, each time
    finally:
        source.close()


# ---------------------------------------------------------------- backoff (no servers)


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [min(60.0, 2.0**i) for i in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_wait_retries_an_unreachable_server_with_growing_delays() -> None:
    fake = FakeTime()
    attempts: list[float] = []

    def refuse(box: Mailbox) -> Any:
        attempts.append(fake.now)
        raise ConnectionRefusedError(111, "Connection refused")

    box = Mailbox(kind="imap", username="u@example.test")
    source = ImapSource(box, connect=refuse, backoff=Backoff(base=1.0, cap=8.0, rng=random.Random(1)),
                        sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(SourceUnavailable):
        drain(source)
    assert source.wait(60.0) is False
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    ceilings = [min(8.0, 2.0**i) for i in range(len(gaps))]
    assert len(attempts) >= 6
    assert all(c / 2 <= g <= c for g, c in zip(gaps, ceilings, strict=True))
    assert fake.now == pytest.approx(1060.0)


def test_wait_returns_true_once_the_server_is_back() -> None:
    fake = FakeTime()
    outcomes: list[Exception | None] = [ConnectionRefusedError(), ConnectionRefusedError(), None]

    def flaky(box: Mailbox) -> Any:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return _FakeClient()

    source = ImapSource(Mailbox(kind="imap", username="u@example.test"), connect=flaky,
                        backoff=Backoff(base=1.0, cap=8.0), sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(SourceUnavailable):
        drain(source)
    assert source.wait(60.0) is True
    assert source.connected and source.uidvalidity == 42
    assert outcomes == []


def test_permanent_login_failure_is_raised_from_wait() -> None:
    def refuse_login(box: Mailbox) -> Any:
        raise LoginError("b'[AUTHENTICATIONFAILED] Authentication failed.'")

    fake = FakeTime()
    source = ImapSource(Mailbox(kind="imap", username="u@example.test"), connect=refuse_login,
                        sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(SourceError, match="AUTHENTICATIONFAILED") as caught:
        source.wait(60.0)
    assert not isinstance(caught.value, SourceUnavailable)


def test_make_source_builds_an_imap_source() -> None:
    built = make_source(settings(mailbox={"kind": "imap", "username": "u@example.test", "password": "p"}))
    assert isinstance(built, ImapSource)


# ---------------------------------------------------------------- helpers


class _Recorder:
    """Wraps a real IMAPClient and records which methods the source called."""

    def __init__(self, client: Any, calls: list[str]) -> None:
        self._client = client
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        self._calls.append(name)
        return getattr(self._client, name)


class _Spy:
    """``connect`` for ImapSource: real connections, each command they send noted by name
    (``IDLE``, ``DONE``, ``UID SEARCH``...) in ``sent`` and each client method called in ``calls``."""

    def __init__(self, before_idle: Callable[[], None] | None = None) -> None:
        self.sent: list[str] = []
        self.calls: list[str] = []
        self.connections = 0
        self._before_idle = before_idle
        self._clients: list[Any] = []

    def connect(self, box: Mailbox) -> Any:
        client = open_client(box)
        imap = client._imap
        send = imap.send

        def spy(data: bytes) -> None:
            name = _command_name(data)
            if name == "IDLE" and self._before_idle is not None:
                self._before_idle()
            if name:
                self.sent.append(name)
            send(data)

        imap.send = spy
        self.connections += 1
        self._clients.append(client)
        return _Recorder(client, self.calls)

    def client(self) -> Any:
        return self._clients[-1]

    def until_server_speaks(self) -> None:
        """Block until the server has sent the newest connection something unasked."""
        readable, _, _ = select.select([self.client().socket()], [], [], HANG_GUARD)
        assert readable, "the server never spoke"


def _command_name(data: bytes) -> str:
    """``b"A12 UID SEARCH ..."`` -> ``"UID SEARCH"``; ``b"DONE\r\n"`` -> ``"DONE"``; line ends -> ``""``."""
    words = data.split()
    if words[:1] == [b"DONE"]:
        return "DONE"
    if len(words) < 2:
        return ""
    name = words[1:3] if words[1].upper() == b"UID" else words[1:2]
    return b" ".join(name).decode().upper()


def _kick(env: ServerEnv, account: ImapAccount) -> None:
    """Have Dovecot disconnect every session of ``account`` (it says BYE first)."""
    subprocess.run(["doveadm", "-c", str(env.dovecot_conf), "kick", account.user],
                   check=True, capture_output=True, timeout=HANG_GUARD)


class _FakeClient:
    """Just enough of IMAPClient for a successful (re)connection."""

    def folder_exists(self, folder: str) -> bool:
        return True

    def select_folder(self, folder: str) -> dict[bytes, int]:
        return {b"UIDVALIDITY": 42, b"EXISTS": 0}

    def shutdown(self) -> None:
        pass
