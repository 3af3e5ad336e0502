"""What every benchmark section needs: the real servers, fresh mailboxes and databases, timed runs.

The servers are the tests' (``scripts/servers.sh``): a fresh Dovecot user per
run (``tests.servers.new_imap_account``), seeded with MULTIAPPEND, a fresh
SQLite file or PostgreSQL database per run, and the SMTP sink of
``bench.sink``. Configurations are written exactly as the daemon tests write
them (``tests.daemon_kit.write_config``), with the per-sender brakes raised:
10,000 messages from the 60 senders of the corpus would otherwise be held by
the brake instead of answered, and the benchmark would measure the brake.

A timed run is a child process measured from spawn to exit by the small
helper ``bench.rss``, which also reports its peak RSS (see there for why the
benchmark process cannot measure that itself).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.sink import SinkProcess
from tests.daemon_kit import db_rows, imap_table, write_config
from tests.factories import REPO
from tests.servers import (
    ImapAccount,
    ServerEnv,
    create_database,
    drop_database,
    folder_counts,
    load_env,
    new_imap_account,
    port_open,
    remove_imap_account,
    seed_imap,
    wait_until,
)

RUN_TIMEOUT = 1800.0
"""Longest a single timed run may take before it is killed and reported as a failure."""


class BenchError(RuntimeError):
    """A run did not do what it must (exit code, tickets, replies): its figures are void."""


def server_env() -> ServerEnv:
    """The facts ``scripts/servers.sh start`` wrote, or a clear stop."""
    try:
        return load_env()
    except pytest.fail.Exception as exc:
        raise SystemExit(f"bench: {exc}") from None


@dataclass(frozen=True, slots=True)
class Timed:
    """One child process: wall seconds from spawn to exit, exit code, peak RSS in bytes, CPU seconds
    (its own and its descendants'; and the whole machine's meanwhile, servers included)."""

    seconds: float
    returncode: int
    max_rss: int
    cpu_s: float
    machine_cpu_s: float


def run_timed(command: Sequence[str], log: Path, *, timeout: float = RUN_TIMEOUT) -> Timed:
    """Run ``command`` from the repository root, output to ``log``; measure it through ``bench.rss``."""
    report = log.with_suffix(".rss.json")
    report.unlink(missing_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench.rss", str(report), *command], cwd=REPO,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise BenchError(f"{' '.join(command[:4])}... did not finish within {timeout:.0f} s") from None
    if not report.exists():
        raise BenchError(f"the measuring helper failed (exit {process.returncode}): {tail(log)}")
    data = json.loads(report.read_text(encoding="utf-8"))
    return Timed(float(data["seconds"]), int(data["returncode"]), int(data["max_rss"]), float(data["cpu_s"]),
                 float(data["machine_cpu_s"]))


def maild(*args: str, config: Path) -> list[str]:
    return [sys.executable, "-m", "maild.cli", *args, "--config", str(config)]


# ---------------------------------------------------------------- one run's world


@dataclass(frozen=True, slots=True)
class World:
    """A fresh mailbox, database and SMTP sink for one measured run."""

    env: ServerEnv
    account: ImapAccount
    database_url: str
    sink: SinkProcess
    workdir: Path
    config: Path

    def counts(self) -> dict[str, int]:
        wait_for_dovecot(self.env)
        return folder_counts(self.account)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        return db_rows(self.database_url, query)


def wait_for_dovecot(env: ServerEnv, timeout: float = 60.0) -> None:
    """Dovecot may be restarting (the daemon tests restart it): wait for it rather than fail."""
    if not wait_until(lambda: port_open(env.imap_host, env.imap_port, 0.5), timeout, interval=0.5):
        raise BenchError(f"Dovecot is not answering on {env.imap_host}:{env.imap_port}")


@contextmanager
def world(env: ServerEnv, workdir: Path, database: str, *, limits: dict[str, Any] | None = None,
          mailbox: dict[str, Any] | None = None, refuse_one_in: int = 0, seed: int = 0) -> Iterator[World]:
    """Everything a run needs, removed afterwards (the mail, the database, the sink); the sink refuses
    one DATA in ``refuse_one_in`` for now, drawn from ``seed`` (0: it accepts everything)."""
    workdir.mkdir(parents=True, exist_ok=True)
    wait_for_dovecot(env)
    account = new_imap_account(env)
    pg_name = create_database(env, prefix="maild_bench") if database == "postgresql" else None
    url = env.pg_url(pg_name) if pg_name else f"sqlite:///{workdir / 'maild.db'}"
    sink = SinkProcess(workdir, refuse_one_in=refuse_one_in, seed=seed)
    try:
        smtp = {"kind": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "none", "timeout": 30.0}
        config = write_config(workdir / "maild.toml", mailbox=imap_table(account, **(mailbox or {})), smtp=smtp,
                              database_url=url, limits=limits)
        yield World(env, account, url, sink, workdir, config)
    finally:
        sink.stop()
        remove_imap_account(account)
        if pg_name:
            drop_database(env, pg_name)
        shutil.rmtree(workdir, ignore_errors=True)


def seed(w: World, messages: Sequence[bytes]) -> None:
    seed_imap(w.account, messages)
    inbox = w.counts()["INBOX"]
    if inbox != len(messages):
        raise BenchError(f"seeded {len(messages)} messages but INBOX holds {inbox}")


def prepare_database(w: World) -> None:
    """Migrate before the clock starts: a deployed maild finds its schema in place."""
    done = run_timed(maild("db", "upgrade", config=w.config), w.workdir / "upgrade.log")
    if done.returncode != 0:
        raise BenchError(f"maild db upgrade failed: {tail(w.workdir / 'upgrade.log')}")


def tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


def check_drained(w: World, messages: int, log: Path) -> int:
    """The run's work is all done: inbox empty, every message recorded, every reply accepted.

    Returns the number of replies the SMTP server accepted.
    """
    counts = w.counts()
    if counts["INBOX"] != 0 or counts["Processed"] != messages:
        raise BenchError(f"folders after the run: {counts}, expected {messages} processed\n{tail(log)}")
    recorded = w.rows("SELECT COUNT(*) FROM messages")[0][0]
    answered = w.rows("SELECT COUNT(*) FROM messages WHERE decision <> 'ignored'")[0][0]
    tickets = w.rows("SELECT COUNT(*) FROM tickets")[0][0]
    if recorded != messages or tickets != answered:
        raise BenchError(f"{recorded} messages and {tickets} tickets recorded, expected {messages} and {answered}")
    states = dict(w.rows("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
    sent = states.pop("sent", 0)
    accepted = w.sink.count()
    if states or accepted != sent:
        raise BenchError(f"outbox {states} left unsent; {sent} sent but the SMTP server accepted {accepted}")
    return accepted
