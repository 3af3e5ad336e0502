"""Latency: the daemon idles, messages arrive one at a time, how soon is each answered?

``maild run`` is started on an empty mailbox and left to settle into IMAP IDLE.
Then messages that get a reply are delivered with IMAP APPEND from a
connection of their own, at a fixed pace of a few per second. A message's
latency runs from the moment its APPEND completed (the message is in the
mailbox) to the moment the SMTP sink accepted the reply whose In-Reply-To
names it; the sink and the benchmark read the same system-wide monotonic clock.

The floor is measured in the same run by an independent IDLE client on the
same INBOX: how long after each delivery Dovecot announced it (``EXISTS``).
No IDLE client, maild included, can hear of a message sooner.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import BenchError, maild, prepare_database, tail, world
from bench.sink import Accepted
from tests.factories import REPO
from tests.mailgen import Sample, corpus_mix
from tests.servers import ImapAccount, ServerEnv

READY_TIMEOUT = 60.0
SETTLE = 2.0
"""Seconds the daemon is left alone after connecting, so it is idling when mail starts to arrive."""
REPLY_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class LatencyRun:
    messages: int
    interval: float
    median: float
    p95: float
    idle_median: float
    idle_p95: float
    worst: float


@dataclass
class IdleObserver:
    """A plain IDLE client on the INBOX, noting when each ``EXISTS`` arrives."""

    account: ImapAccount
    times: list[float] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.account.connect() as client:
                client.select_folder("INBOX", readonly=True)
                client.idle()
                self.ready.set()
                while not self.stop.is_set():
                    for response in client.idle_check(timeout=0.2):
                        if len(response) >= 2 and response[1] == b"EXISTS":
                            self.times.append(time.monotonic())
                client.idle_done()
        except BaseException as exc:  # reported by the caller, never lost in the thread
            self.error = exc
            self.ready.set()


def replied_samples(count: int) -> list[Sample]:
    """``count`` corpus messages that each get a reply (accepted or refused), fresh Message-IDs."""
    pool = [s for s in corpus_mix(count * 2, tag="latency") if s.decision != "ignored"]
    if len(pool) < count:
        raise BenchError("the corpus has too few answered messages")
    return pool[:count]


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (the "inclusive" method)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(pct) - 1]


def latency_run(env: ServerEnv, workdir: Path, count: int, interval: float) -> LatencyRun:
    samples = replied_samples(count)
    with world(env, workdir, "sqlite") as w:
        prepare_database(w)
        log = workdir / "daemon.log"
        with log.open("ab") as out:
            daemon = subprocess.Popen(maild("run", config=w.config), cwd=REPO, stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=out)
        observer = IdleObserver(w.account)
        watcher = threading.Thread(target=observer.run, name="idle-observer", daemon=True)
        try:
            _wait_ready(log, daemon)
            watcher.start()
            observer.ready.wait(READY_TIMEOUT)
            time.sleep(SETTLE)
            delivered = _deliver(w.account, samples, interval)
            replies = _wait_replies(w.sink.accepted, {s.message_id for s in samples})
        finally:
            observer.stop.set()
            watcher.join(timeout=10)
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=60)
        if observer.error is not None:
            raise BenchError(f"IDLE observer failed: {observer.error!r}")
        if code != 0:
            raise BenchError(f"maild run exited {code}: {tail(log)}")
        latencies = [replies[mid] - at for mid, (_, at) in delivered.items()]
        idle = [_first_after(observer.times, start) - at for start, at in delivered.values()]
        return LatencyRun(count, interval, statistics.median(latencies), percentile(latencies, 95),
                          statistics.median(idle), percentile(idle, 95), max(latencies))


def _wait_ready(log: Path, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while "connected" not in tail(log, 100_000):
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"maild did not connect to the mailbox: {tail(log)}")
        time.sleep(0.05)


def _deliver(account: ImapAccount, samples: list[Sample], interval: float) -> dict[str, tuple[float, float]]:
    """APPEND each sample on a fixed schedule; Message-ID -> (APPEND sent, APPEND completed)."""
    delivered: dict[str, tuple[float, float]] = {}
    with account.connect() as client:
        start = time.monotonic()
        for index, sample in enumerate(samples):
            pause = start + index * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent = time.monotonic()
            client.append("INBOX", sample.raw)
            delivered[sample.message_id] = (sent, time.monotonic())
    return delivered


def _wait_replies(accepted: Callable[[], list[Accepted]], wanted: set[str]) -> dict[str, float]:
    """Message-ID -> when its first reply was accepted, once every wanted one has one."""
    deadline = time.monotonic() + REPLY_TIMEOUT
    while True:
        first: dict[str, float] = {}
        for reply in accepted():
            if reply.in_reply_to in wanted:
                first.setdefault(reply.in_reply_to, reply.at)
        if len(first) == len(wanted):
            return first
        if time.monotonic() > deadline:
            raise BenchError(f"only {len(first)} of {len(wanted)} messages were answered in time")
        time.sleep(0.1)


def _first_after(times: list[float], moment: float) -> float:
    later = [t for t in times if t >= moment]
    if not later:
        raise BenchError("the IDLE observer never heard of a delivered message")
    return later[0]
