"""The clock, behind a Protocol: the daemon reads time only through it.

The pure core never reads the clock; the daemon passes ``clock.now()`` into
it, and tests pass a ``FakeClock`` (see tests) to move through a weekend
without sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime."""
        ...


class SystemClock:
    """The real time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)
