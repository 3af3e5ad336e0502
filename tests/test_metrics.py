"""The Prometheus endpoint: counters kept by the daemon, sizes read from the database."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from maild.daemon.metrics import DaemonMetrics, split_listen
from maild.errors import ConfigError
from tests.daemon_kit import daemon, db_rows, sqlite_url
from tests.mailgen import corpus_mix
from tests.ops_kit import ops_config
from tests.servers import ImapAccount, SmtpCapture, free_port, seed_imap, wait_until


def scrape(listen: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` keyed by name and sorted labels."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=30) as response:
        assert response.status == 200
        body = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def test_counters_without_a_database_or_an_endpoint() -> None:
    metrics = DaemonMetrics()
    metrics.message_done("recorded", "accepted", 0.02)
    metrics.message_done("quarantined", None, 0.5)
    metrics.replies_done(sent=3, failed=1, deferred=0)
    metrics.mailbox_error("poll")
    metrics.start()  # no [metrics] listen: nothing is served
    assert metrics.registry.get_sample_value("maild_messages_total", {"decision": "accepted"}) == 1
    assert metrics.registry.get_sample_value("maild_intake_total", {"outcome": "quarantined"}) == 1
    assert metrics.registry.get_sample_value("maild_replies_total", {"result": "sent"}) == 3
    assert metrics.registry.get_sample_value("maild_replies_total", {"result": "deferred"}) is None
    assert metrics.registry.get_sample_value("maild_mailbox_errors_total", {"operation": "poll"}) == 1
    assert metrics.registry.get_sample_value("maild_processing_seconds_count") == 2
    metrics.stop()


def test_a_listen_address_in_use_is_a_configuration_error() -> None:
    assert split_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    with pytest.raises(ConfigError):
        split_listen("localhost")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        metrics = DaemonMetrics(listen=f"127.0.0.1:{busy.getsockname()[1]}")
        with pytest.raises(ConfigError, match=r"metrics\.listen"):
            metrics.start()


def test_the_metrics_endpoint_answers_with_what_the_daemon_did(tmp_path: Path, imap_account: ImapAccount,
                                                                smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    listen = f"127.0.0.1:{free_port()}"
    seed_imap(imap_account, [s.raw for s in corpus_mix(60, tag="metrics")])
    config = ops_config(tmp_path, imap_account, smtp_server, url, tables={"metrics": {"listen": listen}})
    _, d = daemon(config)
    runner = threading.Thread(target=d.run)
    runner.start()
    try:
        assert wait_until(lambda: db_rows(url, "SELECT COUNT(*) FROM messages")[0][0] == 60, 120)
        sent = db_rows(url, "SELECT COUNT(*) FROM outbox")[0][0]
        assert wait_until(lambda: len(smtp_server.messages) == sent, 60)
        assert wait_until(lambda: scrape(listen).get(("maild_replies_total", (("result", "sent"),))) == sent, 30)
        samples = scrape(listen)
    finally:
        d.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()

    decisions = Counter(dict(db_rows(url, "SELECT decision, COUNT(*) FROM messages GROUP BY decision")))
    for decision, count in decisions.items():
        assert samples[("maild_messages_total", (("decision", decision),))] == count
    assert samples[("maild_intake_total", (("outcome", "recorded"),))] == 60
    assert samples[("maild_processing_seconds_count", ())] == 60
    assert samples[("maild_processing_seconds_bucket", (("le", "+Inf"),))] == 60
    assert samples[("maild_database_up", ())] == 1
    assert samples[("maild_quarantine_messages", ())] == 0
    assert samples[("maild_outbox_replies", (("state", "sent"),))] == sent
    open_tickets = db_rows(url, "SELECT COUNT(*) FROM tickets WHERE state = 'open'")[0][0]
    assert samples[("maild_open_tickets", ())] == open_tickets
    waiting = db_rows(url, "SELECT COUNT(*) FROM tickets WHERE taken_in_at IS NULL")[0][0]
    assert samples[("maild_waiting_take_in_tickets", ())] == waiting
    assert (samples[("maild_backlog_age_seconds", ())] > 0) == (waiting > 0)
    assert ("maild_mailbox_errors_total", (("operation", "poll"),)) not in samples
