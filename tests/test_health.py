"""Health: the verdict of ``maild status``, systemd notifications, and the shipped unit file."""

from __future__ import annotations

import configparser
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maild.daemon.notify import Notifier
from maild.ops.health import LAST_POLL_KEY, HealthFacts, MailboxProbe, assess
from maild.store import Store
from tests.daemon_kit import daemon, run_cli, sqlite_url, write_config
from tests.factories import REPO
from tests.ops_kit import ops_config
from tests.servers import DovecotControl, ImapAccount, SmtpCapture, free_port, make_message, seed_imap, wait_until

NOW = datetime(2027, 1, 18, 9, 0, tzinfo=UTC)
SECRET = "Never-Log-Me-7f3a9c"


def facts(**changes: object) -> HealthFacts:
    base = HealthFacts(
        now=NOW, heartbeat_at=NOW - timedelta(seconds=5), last_poll_at=NOW - timedelta(seconds=5),
        mailbox=MailboxProbe("IMAP helpdesk@127.0.0.1:143/INBOX", True, 0), outbox_pending=0, outbox_failing=0,
        outbox_failed=0, outbox_held=0, quarantined=0, open_tickets=3, waiting_take_in=1,
        next_take_in=NOW + timedelta(hours=1), next_digest=NOW + timedelta(hours=22),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the verdict


def test_a_live_daemon_that_reads_its_mailbox_is_healthy() -> None:
    health = assess(facts())
    assert health.healthy and health.exit_code == 0 and health.problems == () and health.warnings == ()


@pytest.mark.parametrize(("changes", "problem"), [
    ({"heartbeat_at": None}, "daemon: no heartbeat was ever recorded (has `maild run` been started?)"),
    ({"heartbeat_at": NOW - timedelta(minutes=10)}, "daemon: not alive, last heartbeat 10m ago"),
    ({"mailbox": MailboxProbe("IMAP x@h:1/INBOX", False, None, "ConnectionRefusedError: refused")},
     "mailbox: IMAP x@h:1/INBOX unreachable: ConnectionRefusedError: refused"),
    ({"last_poll_at": NOW - timedelta(minutes=5)}, "mailbox: the daemon has not read it successfully for 5m"),
    ({"last_poll_at": None}, "mailbox: the daemon has not read it successfully ever"),
])
def test_each_problem_makes_maild_unhealthy(changes: dict[str, object], problem: str) -> None:
    health = assess(facts(**changes))
    assert not health.healthy and health.exit_code == 1
    assert health.problems == (problem,)


def test_trouble_that_needs_a_look_but_not_a_restart_is_a_warning() -> None:
    health = assess(facts(outbox_failing=2, outbox_failed=1, quarantined=3, next_digest=NOW - timedelta(hours=1)))
    assert health.healthy
    assert [w.split(":")[0] for w in health.warnings] == ["outbox", "outbox", "quarantine", "digest"]


def test_a_stale_poll_is_not_blamed_on_the_mailbox_when_the_daemon_is_down() -> None:
    health = assess(facts(heartbeat_at=NOW - timedelta(hours=1), last_poll_at=NOW - timedelta(hours=1)))
    assert health.problems == ("daemon: not alive, last heartbeat 1h 00m ago",)
    assert assess(facts(heartbeat_at=NOW - timedelta(seconds=50)), max_age=timedelta(seconds=30)).problems


# --------------------------------------------------------------------------- status on a mailbox that is not there


def maildir_config(tmp_path: Path, **mailbox: object) -> Path:
    box = {"kind": "maildir", "path": str(tmp_path / "inbox"), **mailbox}
    return write_config(tmp_path / "maild.toml", mailbox=box, smtp={"kind": "maildir", "path": str(tmp_path / "sent")},
                        database_url=sqlite_url(tmp_path))


def beat(url: str, when: datetime) -> None:
    with Store.open(url) as store:
        store.heartbeat("daemon", when, "ok")
        store.set_state(LAST_POLL_KEY, when.isoformat(), when)


def test_status_is_unhealthy_when_the_imap_port_is_closed_and_never_shows_the_password(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    imap = {"kind": "imap", "host": "127.0.0.1", "port": free_port(), "tls": "none", "username": "helpdesk",
            "password": SECRET}
    config = write_config(tmp_path / "maild.toml", mailbox=imap, smtp={"kind": "maildir", "path": str(tmp_path)},
                          database_url=url)
    beat(url, datetime.now(UTC))  # the daemon looks alive: only the mailbox is wrong
    done = run_cli(config, "status", "--timeout", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("maild status: UNHEALTHY")
    assert "UNREACHABLE" in done.stdout
    assert [line for line in done.stdout.splitlines() if "PROBLEM" in line] == [
        next(line for line in done.stdout.splitlines() if "PROBLEM: mailbox" in line)]
    as_json = run_cli(config, "status", "--json", "--timeout", "2")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["healthy"] is False and report["mailbox"]["reachable"] is False and len(report["problems"]) == 1
    assert SECRET not in done.stdout + done.stderr + as_json.stdout + as_json.stderr


def test_status_of_a_maildir_daemon(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    assert daemon(config)[1].run(once=True) == 0  # records a heartbeat and a successful poll
    (tmp_path / "inbox" / "new" / "waiting.eml").write_bytes(make_message(1))
    done = run_cli(config, "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] is True and report["mailbox"]["waiting"] == 1
    assert report["heartbeat_at"] is not None and report["last_poll_at"] is not None
    stale = run_cli(config, "status", "--max-age", "0")
    assert stale.returncode == 1 and "daemon: not alive" in stale.stdout


# --------------------------------------------------------------------------- status against the real Dovecot


def status(config: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(config, "status", "--timeout", "3")


def test_status_turns_unhealthy_when_imap_is_unreachable_and_back(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture, dovecot: DovecotControl) -> None:
    config = ops_config(tmp_path, imap_account, smtp_server, sqlite_url(tmp_path))
    seed_imap(imap_account, [make_message(1, tag="backlog"), make_message(2, tag="backlog")])
    before = run_cli(config, "status", "--json")
    report = json.loads(before.stdout)
    assert before.returncode == 1 and report["mailbox"]["waiting"] == 2  # two waiting; the daemon never ran
    assert report["problems"] == ["daemon: no heartbeat was ever recorded (has `maild run` been started?)"]

    _, d = daemon(config)
    runner = threading.Thread(target=d.run)
    runner.start()
    try:
        assert wait_until(lambda: status(config).returncode == 0, 60)
        healthy = status(config)
        assert "maild status: healthy" in healthy.stdout and "reachable, 0 message(s) waiting" in healthy.stdout
        dovecot.stop()
        down = status(config)
        assert down.returncode == 1
        assert "UNREACHABLE" in down.stdout and "PROBLEM: mailbox" in down.stdout
        assert "PROBLEM: daemon" not in down.stdout  # the daemon is alive, waiting for its mailbox
        dovecot.start()
        assert wait_until(lambda: status(config).returncode == 0, 120)
    finally:
        d.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert imap_account.password not in down.stdout + down.stderr


# --------------------------------------------------------------------------- systemd


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)  # hang guard only
    yield sock, str(path)
    sock.close()


def test_notifications_reach_the_socket_and_the_watchdog_is_paced(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    ticks = iter([0.0, 10.0, 29.0, 31.0])
    notifier = Notifier(path, watchdog_seconds=60.0, clock=lambda: next(ticks))
    assert notifier.ready("processing mail")
    assert sock.recv(4096) == b"READY=1\nSTATUS=processing mail"
    assert notifier.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert not notifier.watchdog() and not notifier.watchdog()  # within half the interval
    assert notifier.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping() and sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_addresses_and_the_environment() -> None:
    name = f"maild-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(30)
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).status("up")
        assert sock.recv(4096) == b"STATUS=up"
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environ(env, pid=42).watchdog_seconds == 30.0
    assert Notifier.from_environ({**env, "WATCHDOG_PID": "41"}, pid=42).watchdog_seconds is None
    assert not Notifier.from_environ({}).enabled and not Notifier.disabled().ready()
    assert not Notifier("/nonexistent/maild.sock").ready()  # logged, never raised


def test_maild_run_sends_ready_watchdog_and_stopping(tmp_path: Path, listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    config = maildir_config(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
    process = subprocess.Popen([sys.executable, "-m", "maild.cli", "run", "--config", str(config)], cwd=REPO,
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        seen = [sock.recv(4096)]
        while b"WATCHDOG=1" not in seen:
            seen.append(sock.recv(4096))
        assert seen[0].startswith(b"READY=1")
        process.send_signal(signal.SIGTERM)
        while seen[-1] != b"STOPPING=1":
            seen.append(sock.recv(4096))
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_the_systemd_unit_is_a_hardened_notify_service() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "contrib" / "systemd" / "maild.service", encoding="utf-8")
    service = unit["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "on-failure"
    assert service["WatchdogSec"].endswith("s") and service["NotifyAccess"] == "main"
    assert " run --config " in service["ExecStart"] and service["User"] == "maild"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                       "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "LockPersonality": "yes",
                       "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native"}.items():
        assert service[key] == value, key
    assert unit["Install"]["WantedBy"] == "multi-user.target"
