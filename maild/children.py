"""How the daemon starts its child processes, and what each does first: live and die with the daemon."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("maild.daemon")

T = TypeVar("T")


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
    compiled: a spawned one spends about half a second of CPU importing and
    compiling them again, at start, while the daemon needs both cores. A fork
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
