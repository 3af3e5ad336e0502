"""Prometheus metrics of the daemon (prometheus-client), served only when ``[metrics] listen`` is set.

Counters are kept by the process that does the work (messages by decision,
intake outcomes, replies by result, mailbox errors, processing latency);
they start at zero with each process, as Prometheus expects. Sizes that the
database already knows (quarantine, outbox, open tickets, the age of the
backlog) are read from the store at each scrape instead, so they are right
after a restart and agree with ``maild status``.

Every instance has its own registry: no global state, and tests can build
as many as they like.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from maild.clock import Clock, SystemClock
from maild.errors import ConfigError, StoreError
from maild.records import QuarantineState, TicketState
from maild.store import Store

log = logging.getLogger("maild.metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` -> ``("127.0.0.1", 9464)``."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("metrics.listen", f"{listen!r} must be HOST:PORT")
    return host, int(port)


class StoreCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def describe(self) -> Iterable[Any]:
        return list(self._families())

    def collect(self) -> Iterable[Any]:
        try:
            return list(self._families(fill=True))
        except StoreError as exc:
            log.warning("metrics: database unavailable: %s", exc)
            up = GaugeMetricFamily("maild_database_up", "1 when the database answered this scrape")
            up.add_metric([], 0)
            return [up]

    def _families(self, *, fill: bool = False) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("maild_database_up", "1 when the database answered this scrape")
        quarantine = GaugeMetricFamily("maild_quarantine_messages", "Messages in quarantine waiting for an operator")
        outbox = GaugeMetricFamily("maild_outbox_replies", "Replies in the outbox, by state", labels=["state"])
        tickets = GaugeMetricFamily("maild_open_tickets", "Open tickets")
        waiting = GaugeMetricFamily("maild_waiting_take_in_tickets", "Open tickets not taken in yet")
        backlog = GaugeMetricFamily("maild_backlog_age_seconds",
                                    "Age of the oldest open ticket not taken in yet (0 when none)")
        if fill:
            now = self._clock.now()
            stats = self._store.stats(now, now)
            up.add_metric([], 1)
            queued = len(self._store.quarantine_list(QuarantineState.QUARANTINED))
            quarantine.add_metric([], queued + len(self._store.quarantine_list(QuarantineState.RETRY)))
            for state, count in stats.outbox_by_state_now:
                outbox.add_metric([state], count)
            tickets.add_metric([], stats.open_now)
            waiting.add_metric([], stats.waiting_take_in_now)
            oldest = min((t.received_at for t in self._store.queue(TicketState.OPEN, limit=1_000_000)
                          if t.taken_in_at is None), default=None)
            backlog.add_metric([], max(timedelta(0), now - oldest).total_seconds() if oldest else 0.0)
        yield from (up, quarantine, outbox, tickets, waiting, backlog)


class DaemonMetrics:
    """The daemon's instruments; ``start`` serves them when a listen address is configured."""

    def __init__(self, store: Store | None = None, listen: str | None = None, clock: Clock | None = None) -> None:
        self.registry = CollectorRegistry()
        self._listen = listen
        self._server: Any = None
        self._thread: threading.Thread | None = None
        r = self.registry
        self.messages = Counter("maild_messages", "Messages recorded, by decision", ["decision"], registry=r)
        self.intake = Counter("maild_intake", "Messages handled, by outcome (recorded, duplicate, quarantined)",
                              ["outcome"], registry=r)
        self.replies = Counter("maild_replies", "Replies leaving the outbox, by result (sent, failed, deferred)",
                               ["result"], registry=r)
        self.mailbox_errors = Counter("maild_mailbox_errors",
                                      "Mailbox errors, by operation (poll: fetch failed; idle: the wait "
                                      "ended without a connection)", ["operation"], registry=r)
        self.latency = Histogram("maild_processing_seconds", "Time to record (or quarantine) one message",
                                 buckets=LATENCY_BUCKETS, registry=r)
        if store is not None:
            r.register(StoreCollector(store, clock or SystemClock()))

    @property
    def listen(self) -> str | None:
        return self._listen

    # ------------------------------------------------------------ instruments

    def message_done(self, outcome: str, decision: str | None, seconds: float) -> None:
        self.intake.labels(outcome).inc()
        if decision is not None and outcome == "recorded":
            self.messages.labels(decision).inc()
        self.latency.observe(max(0.0, seconds))

    def replies_done(self, sent: int, failed: int, deferred: int) -> None:
        for result, count in (("sent", sent), ("failed", failed), ("deferred", deferred)):
            if count:
                self.replies.labels(result).inc(count)

    def mailbox_error(self, operation: str) -> None:
        self.mailbox_errors.labels(operation).inc()

    # ------------------------------------------------------------ endpoint

    def start(self) -> None:
        """Serve ``/metrics`` on the configured address (nothing when none is)."""
        if self._listen is None or self._server is not None:
            return
        host, port = split_listen(self._listen)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError("metrics.listen", f"cannot listen on {self._listen}: {exc.strerror or exc}") from exc
        log.info("metrics served on http://%s/metrics", self._listen)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
