"""Run one command and report its wall time and peak RSS, from a small process of its own.

Why a helper: Linux charges a child, at ``exec``, with the peak RSS of the
address space it was spawned from (``exec_mmap`` folds the old mm's high-water
mark into the child's ``maxrss``), and ``subprocess`` spawns with ``vfork``, so
a child of the benchmark process would report the benchmark's own peak (a
no-op child of a 300 MB parent reports 313 MiB). Spawned from this small
interpreter instead, the command's ``ru_maxrss`` is its own.

    python -m bench.rss OUT_JSON COMMAND...

writes ``{"returncode": ..., "seconds": ..., "max_rss": bytes}`` and exits
with the command's exit code; the command's output goes where this one's goes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    out, command = Path(argv[0]), argv[1:]
    start = time.monotonic()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - start
    process.returncode = code = os.waitstatus_to_exitcode(status)
    out.write_text(json.dumps({"returncode": code, "seconds": seconds, "max_rss": usage.ru_maxrss * 1024}),
                   encoding="utf-8")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
