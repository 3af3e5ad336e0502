"""Backlog runs: the floor, ``maild run --once`` on SQLite and PostgreSQL, and peak memory.

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
from bench.harness import BenchError, check_drained, maild, prepare_database, run_timed, seed, tail, world
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
    """CPU milliseconds per message of maild (its triage worker included)."""
    machine_cpu_ms: float
    """CPU milliseconds per message of the whole machine during the run: Dovecot and the SMTP sink too."""


def messages(count: int, tag: str) -> list[bytes]:
    return [s.raw for s in corpus_mix(count, tag=tag)]


def floor_run(env: ServerEnv, workdir: Path, count: int) -> FloorRun:
    with world(env, workdir, "sqlite") as w:
        seed(w, messages(count, "floor"))
        job = FloorJob(imap_host=env.imap_host, imap_port=env.imap_port, ca_file=str(env.ca_file),
                       user=w.account.user, password=w.account.password, smtp_port=w.sink.port)
        out = workdir / "floor.json"
        log = workdir / "floor.log"
        done = run_timed([sys.executable, "-m", "bench.floor", json.dumps(asdict(job)), str(out)], log)
        if done.returncode != 0:
            raise BenchError(f"floor run failed ({done.returncode}): {tail(log)}")
        report: dict[str, Any] = json.loads(out.read_text())
        accepted = w.sink.count()
        if report["messages"] != count or accepted != count:
            raise BenchError(f"floor: {report['messages']} fetched, {accepted} replies accepted, expected {count}")
        return FloorRun(count, done.seconds, count / done.seconds, report["fetch_s"], report["parse_s"],
                        report["send_s"], done.cpu_s * 1000 / count, done.machine_cpu_s * 1000 / count)


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
