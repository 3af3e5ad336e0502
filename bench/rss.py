"""Run one command and report its wall time, peak RSS and CPU time, from a small process of its own.

Why a helper: Linux charges a child, at ``exec``, with the peak RSS of the
address space it was spawned from (``exec_mmap`` folds the old mm's high-water
mark into the child's ``maxrss``), and ``subprocess`` spawns with ``vfork``, so
a child of the benchmark process would report the benchmark's own peak (a
no-op child of a 300 MB parent reports 313 MiB). Spawned from this small
interpreter instead, the command's ``ru_maxrss`` is its own.

    python -m bench.rss OUT_JSON COMMAND...

writes ``{"returncode", "seconds", "max_rss" (bytes), "cpu_s", "machine_cpu_s"}`` and
exits with the command's exit code; the command's output goes where this one's goes.

``max_rss`` is the larger of the command's own peak and the peak of the sum
over the command and its descendants (sampled every 50 ms): maild's triage
worker and sender are processes of their own, and their memory counts.
``cpu_s`` is the CPU time of the command and its descendants;
``machine_cpu_s`` is the CPU time the whole machine was busy meanwhile (``/proc/stat``): the servers' work included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE_EVERY = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> int:
    out, command = Path(argv[0]), argv[1:]
    busy = machine_busy()
    start = time.monotonic()
    process = subprocess.Popen(command)
    peak = _TreePeak(process.pid)
    peak.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - start
    peak.stop()
    process.returncode = code = os.waitstatus_to_exitcode(status)
    out.write_text(json.dumps({
        "returncode": code, "seconds": seconds, "max_rss": max(usage.ru_maxrss * 1024, peak.bytes),
        "cpu_s": usage.ru_utime + usage.ru_stime, "machine_cpu_s": machine_busy() - busy,
    }), encoding="utf-8")
    return code if code >= 0 else 128 - code


def machine_busy() -> float:
    """CPU seconds the machine has been busy since boot, all cores (``/proc/stat``: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants now (0 for what is gone)."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


class _TreePeak(threading.Thread):
    """Samples ``tree_rss`` until stopped; ``bytes`` is the highest sum seen."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self._root = root
        self._done = threading.Event()
        self.bytes = 0

    def run(self) -> None:
        while not self._done.wait(SAMPLE_EVERY):
            self.bytes = max(self.bytes, tree_rss(self._root))

    def stop(self) -> None:
        self._done.set()
        self.join()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
