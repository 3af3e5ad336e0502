"""What every process the daemon spawns does first: live and die with the daemon."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
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


def bind_to_parent() -> None:
    """In a spawned worker or sender: its life is its parent's.

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
