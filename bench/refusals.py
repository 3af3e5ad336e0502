"""Refusals: a relay answers ``451 4.3.0`` to one DATA in five; how soon is every reply delivered?

A greylisting or rate-limiting relay refuses some messages for now every day.
maild defers a refused reply alone, by its own backoff, while the others go
on (README, "Exactly once"): this measures what that costs in real time, with
the sender's default settings. The mailbox is seeded with messages that each
get exactly one reply, ``maild run`` is started as a daemon and left to take them in
and send; the SMTP sink (``bench.sink``) refuses one DATA in five at random,
drawn from a seed, for the whole run, retries included. The run ends when
every reply the outbox holds was accepted, and counts only if each was
accepted exactly once (counted by its own Message-ID at the sink) and the
outbox ends with every reply sent.

Reported per run: the seconds from the daemon's spawn until the last reply was
accepted, the refusals, the most refusals one reply met in a row, and the
longest wait of one reply (from its first refusal to its acceptance).

    python -m bench.refusals [--repeat 3] [--replies 1000] [--one-in 5] [--timeout 600]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness import BenchError, World, maild, prepare_database, seed, server_env, tail, world
from tests.factories import REPO
from tests.mailgen import corpus_mix
from tests.servers import ServerEnv

REPLIES = 1000
ONE_IN = 5
DELIVERY_TIMEOUT = 600.0
"""Longest a run may take to deliver every reply before it is void."""
TARGET = 60.0
"""Issue 18: every one of 1,000 replies delivered within a minute while the refusals go on."""
POLL = 0.2
STOP_TIMEOUT = 60.0
WORK = REPO / "var" / "bench" / "refusals"


@dataclass(frozen=True, slots=True)
class RefusalRun:
    replies: int
    one_in: int
    seed: int
    seconds: float
    """From the daemon's spawn until the last reply was accepted (start-up and intake included)."""
    refusals: int
    most_refusals: int
    """The most DATA refusals one reply met before it was accepted."""
    longest_wait: float
    """The longest time from a reply's first refusal to its acceptance."""
    duplicates: int


def acknowledged(count: int) -> list[bytes]:
    """``count`` corpus messages that each get exactly one reply, an acknowledgment (fresh Message-IDs):
    a refused request also notifies its referente, which would make the replies outnumber the messages."""
    pool = [s.raw for s in corpus_mix(count * 2, tag="refusals") if s.decision == "accepted"]
    if len(pool) < count:
        raise BenchError("the corpus has too few accepted requests")
    return pool[:count]


def refusals_run(env: ServerEnv, workdir: Path, *, replies: int = REPLIES, one_in: int = ONE_IN, seed_value: int = 0,
                 timeout: float = DELIVERY_TIMEOUT) -> RefusalRun:
    raws = acknowledged(replies)
    with world(env, workdir, "sqlite", refuse_one_in=one_in, seed=seed_value) as w:
        seed(w, raws)
        prepare_database(w)
        log = workdir / "daemon.log"
        started = time.monotonic()
        with log.open("ab") as out:
            daemon = subprocess.Popen(maild("run", config=w.config), cwd=REPO, stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=out)
        try:
            expected = _wait_delivered(w, daemon, len(raws), started + timeout, log)
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=STOP_TIMEOUT)
        if code != 0:
            raise BenchError(f"maild run exited {code}: {tail(log)}")
        return _checked(w, expected, one_in, seed_value, started)


def _wait_delivered(w: World, daemon: subprocess.Popen[bytes], messages: int, deadline: float, log: Path) -> set[str]:
    """Wait until every reply the outbox holds was accepted; the outbox's Message-IDs."""
    expected: set[str] = set()
    while True:
        if daemon.poll() is not None:
            raise BenchError(f"maild run exited {daemon.returncode} before the end: {tail(log)}")
        if not expected and w.rows("SELECT COUNT(*) FROM messages")[0][0] == messages:
            expected = {row[0] for row in w.rows("SELECT message_id FROM outbox")}
        accepted = {a.message_id for a in w.sink.accepted()}
        if expected and expected <= accepted:
            return expected
        if time.monotonic() > deadline:
            raise BenchError(f"{len(accepted & expected)} of {len(expected) or '?'} replies delivered in time")
        time.sleep(POLL)


def _checked(w: World, expected: set[str], one_in: int, seed_value: int, started: float) -> RefusalRun:
    """Every reply accepted exactly once and marked sent; the run's figures."""
    accepted = w.sink.accepted()
    counts = Counter(a.message_id for a in accepted)
    duplicates = sum(n - 1 for n in counts.values())
    states = dict(w.rows("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
    if set(counts) != expected or duplicates or states != {"sent": len(expected)}:
        raise BenchError(f"{len(counts)} distinct replies accepted for {len(expected)} queued, {duplicates} "
                         f"duplicate(s), outbox {states}")
    done = {a.message_id: a.at for a in accepted}
    refused = w.sink.refused()
    first_refused: dict[str, float] = {}
    for r in refused:
        first_refused.setdefault(r.message_id, r.at)
    waits = [done[mid] - at for mid, at in first_refused.items()]
    most = max(Counter(r.message_id for r in refused).values(), default=0)
    return RefusalRun(len(expected), one_in, seed_value, max(done.values()) - started, len(refused), most,
                      max(waits, default=0.0), duplicates)


def brief(run: RefusalRun) -> str:
    return (f"{run.replies} replies delivered in {run.seconds:.1f} s  {run.refusals} refusals  "
            f"at most {run.most_refusals} for one reply  longest wait {run.longest_wait:.1f} s  "
            f"{run.duplicates} duplicates")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.refusals", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--replies", type=int, default=REPLIES)
    parser.add_argument("--one-in", type=int, default=ONE_IN, help="the sink refuses one DATA in N")
    parser.add_argument("--timeout", type=float, default=DELIVERY_TIMEOUT, help="seconds a run may take")
    args = parser.parse_args(argv)
    env = server_env()
    runs = []
    for i in range(args.repeat):
        runs.append(refusals_run(env, WORK / f"run-{i}", replies=args.replies, one_in=args.one_in, seed_value=i,
                                 timeout=args.timeout))
        print(f"refusals [{i + 1}/{args.repeat}] seed {i}: {brief(runs[-1])}", flush=True)
    seconds = [r.seconds for r in runs]
    print(f"all delivered: median {statistics.median(seconds):.1f} s (max {max(seconds):.1f} s; "
          f"target < {TARGET:.0f} s for 1,000 replies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
