"""The SMTP server of the benchmark: aiosmtpd in a process of its own, logging each accepted message.

It runs apart from the benchmark and from maild so that neither pays for its
work under its own interpreter lock, and both the floor and maild talk to the
same kind of server over loopback. For every accepted message it appends one
line ``<CLOCK_MONOTONIC seconds>\\t<In-Reply-To>\\t<Message-ID>`` to its log: the
monotonic clock is system-wide on Linux, so the benchmark can subtract its own
timestamps (latency), and counting lines counts accepted replies.

Given ``--refuse-one-in N`` it answers ``451 4.3.0`` to one DATA in N, drawn
at random from ``--seed`` (a rate-limiting or greylisting relay), and appends
``<seconds>\\t<Message-ID>`` for each refusal to the log's ``.refused`` file.

Run as ``python -m bench.sink PORT LOGFILE [--refuse-one-in N --seed S]``; it
prints ``ready`` once it listens and stops on SIGTERM or SIGINT.
``SinkProcess`` does exactly that.
"""

from __future__ import annotations

import argparse
import contextlib
import random
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
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
REFUSAL = "451 4.3.0 Try again later"
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Accepted:
    """One message the sink accepted: when, which message it answers ("" if none), and its own Message-ID."""

    at: float
    in_reply_to: str
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class Refused:
    """One DATA the sink refused for now: when, and the Message-ID of the message refused."""

    at: float
    message_id: str


@dataclass(frozen=True, slots=True)
class Refusals:
    """Refuse one DATA in ``one_in`` at random, drawn from ``seed``; the refusals go to ``log``."""

    one_in: int
    seed: int
    log: IO[str]


def _header(pattern: re.Pattern[bytes], data: bytes) -> str:
    found = pattern.search(data)
    return found.group(1).decode("ascii", "replace").strip() if found else ""


class _Handler:
    """aiosmtpd hook: accept everything (or refuse some for now), write one line per message."""

    def __init__(self, out: IO[str], refusals: Refusals | None = None) -> None:
        self._out = out
        self._refusals = refusals
        self._draw = random.Random(refusals.seed if refusals else 0).random

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        at = time.monotonic()
        data = bytes(envelope.original_content or b"")
        message_id = _header(_MESSAGE_ID, data)
        if self._refusals is not None and self._draw() * self._refusals.one_in < 1:
            self._refusals.log.write(f"{at:.6f}\t{message_id}\n")
            return REFUSAL
        self._out.write(f"{at:.6f}\t{_header(_IN_REPLY_TO, data)}\t{message_id}\n")
        return "250 OK"


def refused_log(log: Path) -> Path:
    return log.with_suffix(".refused")


def serve(port: int, log: Path, refuse_one_in: int = 0, seed: int = 0) -> None:
    """Listen on 127.0.0.1:``port`` until SIGTERM/SIGINT; refuse one DATA in ``refuse_one_in`` (0: none)."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.ExitStack() as files:
        out = files.enter_context(log.open("a", encoding="ascii", buffering=1))
        refusals = Refusals(refuse_one_in, seed, files.enter_context(
            refused_log(log).open("a", encoding="ascii", buffering=1))) if refuse_one_in else None
        controller = Controller(_Handler(out, refusals), hostname="127.0.0.1", port=port)
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
        at, _, rest = line.partition("\t")
        ref, _, message_id = rest.partition("\t")
        if at:
            found.append(Accepted(float(at), ref, message_id))
    return found


def read_refused(log: Path) -> list[Refused]:
    path = refused_log(log)
    if not path.exists():
        return []
    return [Refused(float(at), message_id) for at, _, message_id in
            (line.partition("\t") for line in path.read_text(encoding="ascii").splitlines()) if at]


class SinkProcess:
    """A running ``bench.sink``: its port, what it accepted, and a clean stop."""

    def __init__(self, workdir: Path, *, refuse_one_in: int = 0, seed: int = 0) -> None:
        self.port = _free_port()
        self.log = workdir / f"smtp-{self.port}.log"
        refusing = ["--refuse-one-in", str(refuse_one_in), "--seed", str(seed)] if refuse_one_in else []
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.sink", str(self.port), str(self.log), *refusing],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # blocks until "ready" or the process died
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the SMTP sink did not start (exit {self._process.poll()})")

    def accepted(self) -> list[Accepted]:
        return read_log(self.log)

    def refused(self) -> list[Refused]:
        return read_refused(self.log)

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


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("log", type=Path)
    parser.add_argument("--refuse-one-in", type=int, default=0, help="answer 451 to one DATA in N (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random refusals")
    return parser.parse_args()


if __name__ == "__main__":
    args = _arguments()
    serve(args.port, args.log, args.refuse_one_in, args.seed)
