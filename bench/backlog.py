"""Backlog runs: the floor, the floor with bookkeeping, ``maild run --once`` on SQLite and PostgreSQL, and peak memory.

Each run gets a fresh mailbox seeded with corpus messages (fresh Message-IDs),
a fresh database and a fresh SMTP sink; the clock runs from the spawn of the
process to its exit, and the run counts only if every message was recorded
and every reply was accepted by the SMTP server.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.floor import FloorJob
from bench.harness import BenchError, Timed, World, check_drained, maild, prepare_database, run_timed, seed, tail, world
from tests.hostile import big_attachment
from tests.mailgen import corpus_mix, fresh_copy
from tests.servers import ServerEnv

ATTACHMENT_BYTES = 25 * 1024 * 1024
ATTACHMENT_LIMITS = {"max_message_bytes": 64 * 1024 * 1024}
"""The default ``max_message_bytes`` (30 MiB) is below a 25 MiB attachment once base64-encoded
(about 34 MiB): raised, so that the message is downloaded and processed, not just quarantined."""


@dataclass(frozen=True, slots=True)
class FloorRun:
    messages: int
    seconds: float
    rate: float
    fetch_s: float
    parse_s: float
    send_s: float
    cpu_ms: float
    """CPU milliseconds per message of the floor's process."""
    machine_cpu_ms: float
    """CPU milliseconds per message of the whole machine during the run: Dovecot and the SMTP sink too."""


@dataclass(frozen=True, slots=True)
class MaildRun:
    database: str
    messages: int
    seconds: float
    rate: float
    replies: int
    max_rss: int
    cpu_ms: float
    """CPU milliseconds per message of maild (its triage worker and sender processes included)."""
    machine_cpu_ms: float
    """CPU milliseconds per message of the whole machine during the run: Dovecot and the SMTP sink too."""


def messages(count: int, tag: str) -> list[bytes]:
    return [s.raw for s in corpus_mix(count, tag=tag)]


@dataclass(frozen=True, slots=True)
class BookkeepingRun:
    messages: int
    seconds: float
    rate: float
    cpu_ms: float
    machine_cpu_ms: float


def floor_run(env: ServerEnv, workdir: Path, count: int) -> FloorRun:
    with world(env, workdir, "sqlite") as w:
        seed(w, messages(count, "floor"))
        out = workdir / "floor.json"
        done = _floor_like(w, "bench.floor", out, count)
        report: dict[str, Any] = json.loads(out.read_text())
        return FloorRun(count, done.seconds, count / done.seconds, report["fetch_s"], report["parse_s"],
                        report["send_s"], done.cpu_s * 1000 / count, done.machine_cpu_s * 1000 / count)


def bookkeeping_run(env: ServerEnv, workdir: Path, count: int) -> BookkeepingRun:
    """The floor plus the least exactly-once bookkeeping, serially (``bench.bookkeeping``)."""
    with world(env, workdir, "sqlite") as w:
        seed(w, messages(count, "bookkeeping"))
        done = _floor_like(w, "bench.bookkeeping", workdir / "bookkeeping.json", count,
                           str(workdir / "bookkeeping.db"))
        return BookkeepingRun(count, done.seconds, count / done.seconds, done.cpu_s * 1000 / count,
                              done.machine_cpu_s * 1000 / count)


def _floor_like(w: World, module: str, out: Path, count: int, *extra: str) -> Timed:
    """Run ``module`` (the floor's job on ``w``), checked: every message fetched, every reply accepted."""
    job = FloorJob(imap_host=w.env.imap_host, imap_port=w.env.imap_port, ca_file=str(w.env.ca_file),
                   user=w.account.user, password=w.account.password, smtp_port=w.sink.port)
    log = out.with_suffix(".log")
    done = run_timed([sys.executable, "-m", module, json.dumps(asdict(job)), str(out), *extra], log)
    if done.returncode != 0:
        raise BenchError(f"{module} failed ({done.returncode}): {tail(log)}")
    fetched = json.loads(out.read_text())["messages"]
    accepted = w.sink.count()
    if fetched != count or accepted != count:
        raise BenchError(f"{module}: {fetched} fetched, {accepted} replies accepted, expected {count}")
    return done


def maild_run(env: ServerEnv, workdir: Path, database: str, raws: list[bytes], *,
              limits: dict[str, Any] | None = None) -> MaildRun:
    """``maild run --once`` over ``raws``: wall time, peak RSS, checked results."""
    with world(env, workdir, database, limits=limits) as w:
        seed(w, raws)
        prepare_database(w)
        log = workdir / "maild.log"
        done = run_timed(maild("run", "--once", config=w.config), log)
        if done.returncode != 0:
            raise BenchError(f"maild run --once exited {done.returncode}: {tail(log)}")
        replies = check_drained(w, len(raws), log)
        return MaildRun(database, len(raws), done.seconds, len(raws) / done.seconds, replies, done.max_rss,
                        done.cpu_s * 1000 / len(raws), done.machine_cpu_s * 1000 / len(raws))


def backlog_run(env: ServerEnv, workdir: Path, database: str, count: int) -> MaildRun:
    return maild_run(env, workdir, database, messages(count, f"backlog-{database}"))


def attachment_message() -> bytes:
    """One request with a 25 MiB attachment, and a Message-ID of its own."""
    return fresh_copy(big_attachment(ATTACHMENT_BYTES), "attachment")[1]


def attachment_run(env: ServerEnv, workdir: Path) -> MaildRun:
    return maild_run(env, workdir, "sqlite", [attachment_message()], limits=ATTACHMENT_LIMITS)


def single_run(env: ServerEnv, workdir: Path) -> MaildRun:
    """The baseline the attachment is compared with: one ordinary message, same limits."""
    return maild_run(env, workdir, "sqlite", messages(1, "single"), limits=ATTACHMENT_LIMITS)
