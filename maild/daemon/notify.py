"""systemd notifications (sd_notify) over ``NOTIFY_SOCKET``, with the standard library only.

With ``Type=notify`` systemd waits for ``READY=1`` before it calls the
service started, and with ``WatchdogSec=`` it restarts a service that stops
sending ``WATCHDOG=1``. The protocol is one datagram per notification on a
Unix socket; an address starting with ``@`` is in the abstract namespace.
Without ``NOTIFY_SOCKET`` (not under systemd) every call does nothing.
A failed send is logged and ignored: notifications must never stop maild.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("maild.notify")


class Notifier:
    """Sends READY, WATCHDOG, STATUS and STOPPING to systemd when it is listening."""

    def __init__(self, address: str | None, watchdog_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._address = address
        self._watchdog = watchdog_seconds
        self._clock = clock
        self._last_watchdog: float | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        """``NOTIFY_SOCKET``, and ``WATCHDOG_USEC`` unless ``WATCHDOG_PID`` names another process."""
        address = environ.get("NOTIFY_SOCKET") or None
        watchdog: float | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not owner or owner == str(pid or os.getpid())):
            watchdog = int(usec) / 1_000_000
        return cls(address, watchdog)

    @classmethod
    def disabled(cls) -> Notifier:
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_seconds(self) -> float | None:
        return self._watchdog

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *((f"STATUS={status}",) if status else ()))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """Keep-alive, sent at most every half watchdog interval (call it as often as you like)."""
        if self._watchdog is None or not self.enabled:
            return False
        now = self._clock()
        if self._last_watchdog is not None and now - self._last_watchdog < self._watchdog / 2:
            return False
        self._last_watchdog = now
        return self.notify("WATCHDOG=1")

    def notify(self, *fields: str) -> bool:
        """Send one datagram; True when it was sent."""
        if self._address is None:
            return False
        address = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall("\n".join(fields).encode())
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self._address, exc)
            return False
        return True
