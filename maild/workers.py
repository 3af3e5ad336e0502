"""Triage in a worker process, so that parsing and the rules run on another core.

CPython runs one thread of Python at a time. The daemon's main process
fetches, records, moves and (in a thread) sends; the stages before the
database (dedupe key, parse, screen, classify, authorize, schedule) were about
half of its CPU per message. ``TriagePool`` runs them for the next batch in a
process of its own while the main process records the current one.

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
import multiprocessing.context
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from datetime import datetime

from maild.children import bind_to_parent, child_context, start_on_spare_core
from maild.pipeline import Triager
from maild.settings import Settings
from maild.triage import Triaged, triage

log = logging.getLogger("maild.workers")

SHIP_MAX_BYTES = 1024 * 1024
"""Larger messages are triaged in the main process."""


class TriagePool:
    """One worker process triaging batches; ``submit`` now, ``result`` later."""

    def __init__(self, settings: Settings, triager: Triager | None = None,
                 drop_connections: Callable[[], None] | None = None) -> None:
        """``triager``: the daemon's own rules, which a forked worker uses as they are (see
        ``maild.children.child_context``, which calls ``drop_connections`` before a fork)."""
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

    def submit(self, raws: Sequence[bytes | None], now: datetime) -> Future[list[Triaged | None]]:
        shipped = [raw if raw is not None and len(raw) <= SHIP_MAX_BYTES else None for raw in raws]
        try:
            return self._executor.submit(triage_batch, shipped, now, self._settings)
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


def triage_batch(raws: Sequence[bytes | None], now: datetime, settings: Settings) -> list[Triaged | None]:
    """In the worker: ``triage`` each message; None for one not shipped or whose triage raised."""
    triager = _triager(settings)
    return [_one(raw, now, triager, settings) if raw is not None else None for raw in raws]


def _one(raw: bytes, now: datetime, triager: Triager, settings: Settings) -> Triaged | None:
    try:
        return triage(raw, now, triager, settings)
    except Exception:  # the main process re-runs it and quarantines the message with the error
        return None
