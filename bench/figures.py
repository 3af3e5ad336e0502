"""The benchmark's figures: raw values per repeat, their median and spread, and the targets.

Every figure keeps all its measured values; what is reported is the median,
with the spread (min-max) beside it, so one lucky or unlucky run neither
makes nor breaks a target.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured quantity over the repeats."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "values": list(self.values)}


def figure(values: Sequence[float]) -> Figure:
    return Figure(tuple(values))


@dataclass(frozen=True, slots=True)
class Target:
    """A target and whether the median met it."""

    name: str
    wanted: str
    measured: str
    met: bool


@dataclass
class Results:
    """Everything one ``make bench`` measured, filled in section by section."""

    meta: dict[str, Any]
    figures: dict[str, Figure] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, values: Sequence[float]) -> None:
        self.figures[name] = figure(values)

    def get(self, name: str) -> Figure | None:
        return self.figures.get(name)

    def ratio(self, top: str, bottom: str) -> Figure | None:
        """Per-repeat ratio ``top / bottom`` (repeats are paired: run i of both)."""
        a, b = self.get(top), self.get(bottom)
        if a is None or b is None or not a.values or len(a.values) != len(b.values):
            return None
        return figure([x / y for x, y in zip(a.values, b.values, strict=True)])

    def as_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "figures": {k: v.as_dict() for k, v in self.figures.items()},
                "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        """Back from ``results.json`` (to redraw a report without measuring again)."""
        figures = {k: figure(v["values"]) for k, v in data["figures"].items()}
        return cls(meta=data["meta"], figures=figures, details=data.get("details", {}))


def targets(r: Results) -> list[Target]:
    """The issue's targets, judged on the medians."""
    found: list[Target] = []
    ratio = r.ratio("backlog_sqlite_rate", "floor_rate")
    if ratio is not None:
        found.append(Target("Backlog, SQLite", "≥ 0.80 × floor", f"{ratio.median:.2f} × floor", ratio.median >= 0.8))
    median, p95 = r.get("latency_median"), r.get("latency_p95")
    if median is not None and p95 is not None:
        found.append(Target("Latency, median", "< 0.8 s", f"{median.median:.2f} s", median.median < 0.8))
        found.append(Target("Latency, 95th percentile", "< 1.5 s", f"{p95.median:.2f} s", p95.median < 1.5))
    growth = _rss_growth(r)
    if growth is not None:
        found.append(Target(growth[0], "≤ 1.20 ×", f"{growth[1]:.2f} ×", growth[1] <= 1.2))
    refused = r.get("refusals_seconds")
    if refused is not None and r.details.get("refusals", {}).get("replies") == 1000:
        found.append(Target("1,000 replies, 1 DATA in 5 refused: all delivered", "< 60 s",
                            f"{refused.median:.1f} s", refused.median < 60))
    added = r.get("rss_attachment_added")
    if added is not None:
        found.append(Target("RSS added by a 25 MiB attachment", "< 100 MB", f"{added.median / 1e6:.0f} MB",
                            added.median < 100e6))
    return found


def rss_sizes(r: Results) -> list[int]:
    return sorted(int(name.rpartition("_")[2]) for name in r.figures if name.startswith("rss_messages_"))


def _rss_growth(r: Results) -> tuple[str, float] | None:
    sizes = rss_sizes(r)
    if len(sizes) < 2:
        return None
    small, large = r.get(f"rss_messages_{sizes[0]}"), r.get(f"rss_messages_{sizes[-1]}")
    assert small is not None and large is not None
    return f"RSS at {sizes[-1]:,} messages vs {sizes[0]:,}", large.median / small.median
