"""The daemon's child processes: how they start and live with the daemon, and the triage worker.

CPython runs one thread of Python at a time, and the stages before the
database (dedupe key, parse, screen, classify, authorize, schedule) are a
large share of the daemon's CPU per message. ``TriagePool`` runs them for the
next batch in a process of its own while the main process records the current one.

Only bytes go out and frozen records (``Triaged``) come back. The worker
touches no mailbox, database or network, so exactly-once is untouched:
recording, commit, fsync and move stay in the main process, in order. A
message whose triage raises comes back as None and goes the one-by-one way
(quarantined there). A message over ``SHIP_MAX_BYTES`` is not shipped (two
more copies of a large message are not worth a core); None for it too, and
the main process triages it. A worker that dies is replaced, and its batch is
triaged in the main process; a worker whose daemon dies exits at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from datetime import datetime
from typing import TypeVar

from maild.pipeline import Triaged, Triager, triage
from maild.settings import Settings

log = logging.getLogger("maild.workers")

T = TypeVar("T")

SHIP_MAX_BYTES = 1024 * 1024
"""Larger messages are triaged in the main process."""


class TriagePool:
    """One worker process triaging batches; ``submit`` now, ``result`` later."""

    def __init__(self, settings: Settings, triager: Triager | None = None,
                 drop_connections: Callable[[], None] | None = None) -> None:
        """``triager``: the daemon's own rules, which a forked worker uses as they are (see
        ``child_context``, which calls ``drop_connections`` before a fork)."""
        self._settings = settings
        context = child_context(drop_connections)
        self.forked = context.get_start_method() == "fork"
        """Whether the first worker was forked: it starts at once, with the daemon's modules."""
        self._executor, self._worker = self._start(context, triager)

    @classmethod
    def for_machine(cls, settings: Settings, triager: Triager | None = None,
                    drop_connections: Callable[[], None] | None = None) -> TriagePool | None:
        """A pool when this machine has a core to spare for it, else None (triage stays in-process)."""
        return start_on_spare_core(lambda: cls(settings, triager, drop_connections), "triage worker")

    def _start(self, context: multiprocessing.context.BaseContext,
               triager: Triager | None) -> tuple[ProcessPoolExecutor, Future[int]]:
        inherited = triager if context.get_start_method() == "fork" else None  # spawn: compiled there
        executor = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_start_worker,
                                       initargs=(self._settings, inherited))
        return executor, executor.submit(_warm_up, self._settings)  # loads while the daemon connects

    def ready(self) -> bool:
        """Whether the worker has started and compiled the rules."""
        return self._worker.done()

    def started(self) -> None:
        """Wait until the worker has started and compiled the rules; raise what stopped it doing so
        (a ``RulesError`` names the template): the daemon stops rather than triage without rules."""
        with suppress(BrokenProcessPool):  # died: the next batch finds out, and starts another
            self._worker.result()

    def check(self) -> None:
        """``started`` once the worker is done starting, without waiting for it before."""
        if self._worker.done():
            self.started()

    def worker_pids(self) -> tuple[int, ...]:
        """The worker's process id, once it is up (for operators and tests)."""
        return (self._worker.result(),)

    def _restart(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor, self._worker = self._start(child_context(None), None)  # spawned: see child_context

    def submit(self, raws: Sequence[bytes | None], now: datetime,
               arrivals: Sequence[datetime | None] | None = None) -> Future[list[Triaged | None]]:
        """``arrivals``: each message's ``Incoming.arrived_at``, in the same order (None: unknown)."""
        shipped = [raw if raw is not None and len(raw) <= SHIP_MAX_BYTES else None for raw in raws]
        times = list(arrivals) if arrivals is not None else [None] * len(raws)
        try:
            return self._executor.submit(triage_batch, shipped, now, self._settings, times)
        except BrokenProcessPool:
            return self._failed(len(raws))

    def result(self, future: Future[list[Triaged | None]], count: int) -> list[Triaged | None]:
        """The batch's triage; all None (triage in the main process) if the worker died meanwhile."""
        try:
            return future.result()
        except BrokenProcessPool as exc:
            log.error("the triage worker died (%s); starting another, this batch is triaged here", exc)
            self._restart()
        except Exception as exc:  # a fault of the hand-over itself (a result that would not pickle)
            log.error("the triage worker failed on a batch (%s: %s); it is triaged here", type(exc).__name__, exc)
        return [None] * count

    def _failed(self, count: int) -> Future[list[Triaged | None]]:
        log.error("the triage worker is gone; starting another, this batch is triaged here")
        self._restart()
        failed: Future[list[Triaged | None]] = Future()
        failed.set_result([None] * count)
        return failed

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


_TRIAGERS: dict[Settings, Triager] = {}
"""The worker's rules, by settings (a worker serves one daemon): the daemon's own when forked."""


def _start_worker(settings: Settings, triager: Triager | None) -> None:
    bind_to_parent()
    if triager is not None:
        _TRIAGERS[settings] = triager


def _triager(settings: Settings) -> Triager:
    """The worker's rules, loaded once per settings unless the daemon's came with the fork."""
    triager = _TRIAGERS.get(settings)
    if triager is None:
        triager = _TRIAGERS[settings] = Triager.from_settings(settings)
    return triager


def _warm_up(settings: Settings) -> int:
    """The worker's first job: the rules compiled (a forked worker's came uncompiled), its pid returned."""
    _triager(settings).rules.compile()
    return os.getpid()


def triage_batch(raws: Sequence[bytes | None], now: datetime, settings: Settings,
                 arrivals: Sequence[datetime | None] | None = None) -> list[Triaged | None]:
    """In the worker: ``triage`` each message; None for one not shipped or whose triage raised."""
    triager = _triager(settings)
    times = arrivals if arrivals is not None else [None] * len(raws)
    return [_one(raw, now, triager, settings, at) if raw is not None else None
            for raw, at in zip(raws, times, strict=True)]


def _one(raw: bytes, now: datetime, triager: Triager, settings: Settings, arrived_at: datetime | None
         ) -> Triaged | None:
    try:
        return triage(raw, now, triager, settings, arrived_at)
    except Exception:  # the main process re-runs it and quarantines the message with the error
        return None


def start_on_spare_core(start: Callable[[], T], what: str) -> T | None:
    """``start()`` when this machine has a core to spare for another process, else None: the main
    process then does the work itself (a machine with one core gains nothing from a second process)."""
    if (os.cpu_count() or 1) < 2:
        return None
    try:
        return start()
    except OSError as exc:  # no process can be started here
        log.warning("cannot start the %s (%s); the main process does its work", what, exc)
        return None


def child_context(
    drop_connections: Callable[[], None] | None,
) -> multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext:
    """Fork while this process runs a single thread and the caller can close its connections, else spawn.

    A forked child starts with the daemon's modules imported and its rules
    loaded; a spawned one redoes both at start, while the daemon needs both cores. A fork
    is safe only while no other thread exists (it copies their locks in
    whatever state they are in) and with no database connection open, so
    ``drop_connections`` closes them first: SQLite keeps per-process lock
    bookkeeping that a child opening the same file would inherit and trust.
    Without it (None) the caller cannot vouch for that, and the child is
    spawned. The daemon forks its first children before it starts a thread
    or opens the mailbox; a replacement, started later beside its threads and
    connections, is always spawned.
    """
    if (drop_connections is None or threading.active_count() > 1
            or "fork" not in multiprocessing.get_all_start_methods()):
        return multiprocessing.get_context("spawn")
    drop_connections()
    return multiprocessing.get_context("fork")


def bind_to_parent() -> None:
    """In a worker or sender process: its life is its parent's.

    It ignores SIGINT and SIGTERM, which are meant for the daemon (Ctrl-C
    reaches the whole process group, systemd signals the whole cgroup): the
    daemon finishes its work and then stops its children. And it exits the
    moment the parent is gone, even killed with SIGKILL: a child blocked on a
    queue or an event would never be told.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="maild-parent-watch", daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)
