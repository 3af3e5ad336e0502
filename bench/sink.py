"""The SMTP server of the benchmark: aiosmtpd in a process of its own, logging each accepted message.

It runs apart from the benchmark and from maild so that neither pays for its
work under its own interpreter lock, and both the floor and maild talk to the
same kind of server over loopback. For every accepted message it appends one
line ``<CLOCK_MONOTONIC seconds>\\t<In-Reply-To>`` to its log: the monotonic
clock is system-wide on Linux, so the benchmark can subtract its own
timestamps (latency), and counting lines counts accepted replies.

Run as ``python -m bench.sink PORT LOGFILE``; it prints ``ready`` once it
listens and stops on SIGTERM or SIGINT. ``SinkProcess`` does exactly that.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from aiosmtpd.controller import Controller

_IN_REPLY_TO = re.compile(rb"^In-Reply-To:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Accepted:
    """One message the sink accepted: when, and which message it answers ("" if none)."""

    at: float
    in_reply_to: str


class _Handler:
    """aiosmtpd hook: accept everything, write one line per message."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        at = time.monotonic()
        found = _IN_REPLY_TO.search(bytes(envelope.original_content or b""))
        ref = found.group(1).decode("ascii", "replace").strip() if found else ""
        self._out.write(f"{at:.6f}\t{ref}\n")
        return "250 OK"


def serve(port: int, log: Path) -> None:
    """Listen on 127.0.0.1:``port`` until SIGTERM/SIGINT."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with log.open("a", encoding="ascii", buffering=1) as out:
        controller = Controller(_Handler(out), hostname="127.0.0.1", port=port)
        controller.start()
        print("ready", flush=True)
        try:
            stop.wait()
        finally:
            controller.stop()


def _free_port() -> int:
    """A loopback port nobody listens on now (aiosmtpd probes the port it is given)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_log(log: Path) -> list[Accepted]:
    if not log.exists():
        return []
    found = []
    for line in log.read_text(encoding="ascii").splitlines():
        at, _, ref = line.partition("\t")
        if at:
            found.append(Accepted(float(at), ref))
    return found


class SinkProcess:
    """A running ``bench.sink``: its port, what it accepted, and a clean stop."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.log = workdir / f"smtp-{self.port}.log"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.sink", str(self.port), str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # blocks until "ready" or the process died
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the SMTP sink did not start (exit {self._process.poll()})")

    def accepted(self) -> list[Accepted]:
        return read_log(self.log)

    def count(self) -> int:
        return len(self.accepted())

    def wait_for(self, count: int, timeout: float) -> int:
        """Hang guard: the number accepted once ``count`` arrived or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while (seen := self.count()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
