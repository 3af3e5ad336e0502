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
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maild.daemon.notify import Notifier
from maild.ops.health import HealthFacts, MailboxProbe, assess
from maild.records import DaemonRecord
from maild.settings import HEALTH_STARTING_FOR
from maild.store import Store
from tests.daemon_kit import daemon, run_cli, spawn_daemon, sqlite_url, write_config
from tests.factories import REPO
from tests.ops_kit import ops_config
from tests.servers import PrivateDovecot, SmtpCapture, free_port, make_message, seed_imap, wait_until

NOW = datetime(2027, 1, 18, 9, 0, tzinfo=UTC)
SECRET = "Never-Log-Me-7f3a9c"


def run(started: timedelta = timedelta(hours=1), heartbeat: timedelta | None = timedelta(seconds=5),
        poll: timedelta | None = timedelta(seconds=5), stopped: timedelta | None = None, pid: int = 4242,
        host: str = "mx1") -> DaemonRecord:
    """A daemon's row, its times given as how long ago."""
    return DaemonRecord(id=pid, host=host, pid=pid, started_at=NOW - started,
                        heartbeat_at=NOW - (heartbeat if heartbeat is not None else started),
                        last_poll_at=None if poll is None else NOW - poll,
                        stopped_at=None if stopped is None else NOW - stopped)


def facts(**changes: object) -> HealthFacts:
    base = HealthFacts(
        now=NOW, daemons=(run(),),
        mailbox=MailboxProbe("IMAP helpdesk@127.0.0.1:143/INBOX", True, 0), outbox_pending=0, outbox_failing=0,
        outbox_failed=0, outbox_held=0, quarantined=0, open_tickets=3, waiting_take_in=1,
        next_take_in=NOW + timedelta(hours=1), next_digest=NOW + timedelta(hours=22),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the verdict


def test_a_live_daemon_that_reads_its_mailbox_is_healthy() -> None:
    health = assess(facts())
    assert health.healthy and health.exit_code == 0 and health.problems == () and health.warnings == ()
    assert [i.state for i in health.instances] == ["running"]


def test_a_daemon_that_has_not_finished_its_first_read_is_starting_for_a_bounded_time() -> None:
    first_read = assess(facts(daemons=(run(started=timedelta(seconds=9), poll=None),)))
    assert first_read.healthy and first_read.exit_code == 0
    assert [i.state for i in first_read.instances] == ["starting"]
    too_long = assess(facts(daemons=(run(started=HEALTH_STARTING_FOR + timedelta(minutes=1), poll=None),)))
    assert too_long.exit_code == 1 and too_long.verdict == "UNHEALTHY"
    assert too_long.problems == ("daemon mx1:4242: has not read the mailbox successfully since its start 6m ago",)


@pytest.mark.parametrize(("daemons", "problem"), [
    ((), "daemon: none is running (no daemon recorded itself lately: has `maild run` been started?)"),
    ((run(stopped=timedelta(minutes=3)),), "daemon: none is running (mx1:4242 stopped 3m ago)"),
    ((run(heartbeat=timedelta(minutes=10), poll=timedelta(minutes=10)),),
     "daemon: none is running (mx1:4242 vanished: last heartbeat 10m ago, no stop recorded)"),
])
def test_no_running_daemon_is_exit_code_3_with_the_reason(daemons: tuple[DaemonRecord, ...], problem: str) -> None:
    health = assess(facts(daemons=daemons))
    assert not health.healthy and not health.running and health.exit_code == 3 and health.verdict == "NOT RUNNING"
    assert health.problems == (problem,)


@pytest.mark.parametrize(("changes", "problem"), [
    ({"mailbox": MailboxProbe("IMAP x@h:1/INBOX", False, None, "ConnectionRefusedError: refused")},
     "mailbox: IMAP x@h:1/INBOX unreachable: ConnectionRefusedError: refused"),
    ({"daemons": (run(poll=timedelta(minutes=5)),)}, "daemon mx1:4242: has not read the mailbox successfully for 5m"),
])
def test_each_problem_of_a_running_daemon_makes_maild_unhealthy(changes: dict[str, object], problem: str) -> None:
    health = assess(facts(**changes))
    assert not health.healthy and health.running and health.exit_code == 1
    assert health.problems == (problem,)


def test_two_daemons_one_healthy_is_enough_and_the_other_is_shown() -> None:
    other = run(pid=77, host="mx2", poll=timedelta(minutes=5))
    health = assess(facts(daemons=(run(), other)))
    assert health.exit_code == 0 and health.warnings == ("daemon mx2:77: has not read the mailbox successfully for 5m",)
    vanished = run(pid=77, host="mx2", heartbeat=timedelta(minutes=10), poll=timedelta(minutes=10))
    assert assess(facts(daemons=(run(), vanished))).exit_code == 0
    both_stuck = assess(facts(daemons=(run(poll=timedelta(minutes=5)), other)))
    assert both_stuck.exit_code == 1 and len(both_stuck.problems) == 2


def test_a_daemon_that_does_not_read_while_another_holds_the_mailbox_stands_by() -> None:
    standby = run(pid=77, host="mx2", poll=None, started=timedelta(hours=2))
    health = assess(facts(daemons=(run(), standby), reader="mx1:4242", reader_since=NOW - timedelta(hours=1)))
    assert [i.state for i in health.instances] == ["running", "standby"]
    assert health.exit_code == 0 and health.warnings == ()
    alone = assess(facts(daemons=(standby,), reader="mx1:4242", reader_since=NOW - timedelta(hours=1)))
    assert alone.exit_code == 1  # the reader is gone: a standby that has not taken over reads nothing


def test_trouble_that_needs_a_look_but_not_a_restart_is_a_warning() -> None:
    health = assess(facts(outbox_failing=2, outbox_failed=1, quarantined=3, next_digest=NOW - timedelta(hours=1)))
    assert health.healthy
    assert [w.split(":")[0] for w in health.warnings] == ["outbox", "outbox", "quarantine", "digest"]


def test_a_stale_poll_is_not_blamed_on_the_mailbox_when_the_daemon_is_down() -> None:
    gone = run(heartbeat=timedelta(hours=1), poll=timedelta(hours=1))
    assert assess(facts(daemons=(gone,))).problems == (
        "daemon: none is running (mx1:4242 vanished: last heartbeat 1h 00m ago, no stop recorded)",)
    assert assess(facts(daemons=(run(heartbeat=timedelta(seconds=50)),)), max_age=timedelta(seconds=30)).problems


# --------------------------------------------------------------------------- status on a mailbox that is not there


def maildir_config(tmp_path: Path, **mailbox: object) -> Path:
    box = {"kind": "maildir", "path": str(tmp_path / "inbox"), **mailbox}
    return write_config(tmp_path / "maild.toml", mailbox=box, smtp={"kind": "maildir", "path": str(tmp_path / "sent")},
                        database_url=sqlite_url(tmp_path))


def beat(url: str, when: datetime) -> None:
    """A daemon that started and read its mailbox at ``when``."""
    with Store.open(url) as store:
        store.beat_daemon(store.start_daemon("mx1", 4242, when), when, when)


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
    beat(sqlite_url(tmp_path), datetime.now(UTC))
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "inbox" / sub).mkdir(parents=True)
    (tmp_path / "inbox" / "new" / "waiting.eml").write_bytes(make_message(1))
    done = run_cli(config, "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] is True and report["mailbox"]["waiting"] == 1
    assert report["heartbeat_at"] is not None and report["last_poll_at"] is not None
    assert [(d["host"], d["pid"], d["state"]) for d in report["daemons"]] == [("mx1", 4242, "running")]
    stale = run_cli(config, "status", "--max-age", "0")
    assert stale.returncode == 3 and "vanished" in stale.stdout


def test_a_run_once_records_its_start_and_its_stop(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    assert daemon(config)[1].run(once=True) == 0
    done = run_cli(config, "status")
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith("maild status: NOT RUNNING")
    assert f":{os.getpid()} stopped, started " in done.stdout and "PROBLEM: daemon: none is running" in done.stdout


# --------------------------------------------------------------------------- status of real daemons


def status_report(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli(config, "status", "--json", *args)
    return done.returncode, json.loads(done.stdout)


def states(report: dict[str, Any]) -> list[str]:
    return [d["state"] for d in report["daemons"]]


def test_status_from_start_through_the_first_read_to_a_clean_stop(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    inbox = tmp_path / "inbox" / "new"
    inbox.mkdir(parents=True)
    for n in range(200):  # a backlog: the first read takes a moment
        (inbox / f"m{n}.eml").write_bytes(make_message(n, tag="backlog"))
    process = spawn_daemon(config, log=tmp_path / "daemon.log")
    try:
        seen: list[tuple[int, list[str]]] = []

        def reading() -> bool:
            code, report = status_report(config)
            seen.append((code, states(report)))
            return states(report) == ["running"]

        assert wait_until(reading, 60), (tmp_path / "daemon.log").read_text()
        # Before its row exists nothing runs (3); from then on it is starting or running, never unhealthy.
        assert {code for code, _ in seen} <= {0, 3} and seen[-1][0] == 0
        assert all(s in ([], ["starting"], ["running"]) for _, s in seen)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    code, report = status_report(config)
    assert code == 3 and states(report) == ["stopped"] and report["status"] == "not running"
    assert report["daemons"][0]["pid"] == process.pid and report["daemons"][0]["stopped_at"] is not None


def test_a_killed_daemon_is_not_running_once_its_heartbeat_is_stale(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    process = spawn_daemon(config, log=tmp_path / "daemon.log")
    try:
        assert wait_until(lambda: status_report(config)[0] == 0, 60), (tmp_path / "daemon.log").read_text()
    finally:
        process.kill()
        process.wait()
    code, report = status_report(config)  # the last heartbeat is seconds old: it looks alive for --max-age
    assert code == 0 and states(report) == ["running"]
    time.sleep(2.5)
    done = run_cli(config, "status", "--max-age", "2")
    assert done.returncode == 3, done.stdout
    assert f":{process.pid} vanished, started " in done.stdout and "no stop recorded" in done.stdout


@pytest.mark.servers
def test_two_daemons_sharing_a_database_are_each_shown(tmp_path: Path, pg_url: str) -> None:
    config = write_config(tmp_path / "maild.toml", mailbox={"kind": "maildir", "path": str(tmp_path / "inbox")},
                          smtp={"kind": "maildir", "path": str(tmp_path / "sent")}, database_url=pg_url)
    first = spawn_daemon(config, log=tmp_path / "first.log")
    second = spawn_daemon(config, log=tmp_path / "second.log")
    try:
        # One reads the mailbox, the other stands by (one reader per PostgreSQL database).
        assert wait_until(lambda: sorted(states(status_report(config)[1])) == ["running", "standby"], 60)
        code, report = status_report(config)
        assert code == 0 and {d["pid"] for d in report["daemons"]} == {first.pid, second.pid}
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
        # Whichever it was, the one left reads: at once if it read already, within seconds if it stood by.
        assert wait_until(lambda: sorted(states(status_report(config)[1])) == ["running", "stopped"], 60)
        assert status_report(config)[0] == 0
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
        code, report = status_report(config)
        assert code == 3 and states(report) == ["stopped", "stopped"]
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()


# --------------------------------------------------------------------------- status against the real Dovecot


def status(config: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(config, "status", "--timeout", "3")


def test_status_turns_unhealthy_when_imap_is_unreachable_and_back(
        tmp_path: Path, private_dovecot: PrivateDovecot, smtp_server: SmtpCapture) -> None:
    imap_account = private_dovecot.new_account()
    config = ops_config(tmp_path, imap_account, smtp_server, sqlite_url(tmp_path))
    seed_imap(imap_account, [make_message(1, tag="backlog"), make_message(2, tag="backlog")])
    before = run_cli(config, "status", "--json")
    report = json.loads(before.stdout)
    assert before.returncode == 3 and report["mailbox"]["waiting"] == 2  # two waiting; the daemon never ran
    assert report["problems"] == [
        "daemon: none is running (no daemon recorded itself lately: has `maild run` been started?)"]

    _, d = daemon(config)
    runner = threading.Thread(target=d.run)
    runner.start()
    try:
        assert wait_until(lambda: status(config).returncode == 0, 60)
        healthy = status(config)
        assert "maild status: healthy" in healthy.stdout and "reachable, 0 message(s) waiting" in healthy.stdout
        private_dovecot.stop()
        down = status(config)
        assert down.returncode == 1
        assert "UNREACHABLE" in down.stdout and "PROBLEM: mailbox" in down.stdout
        assert "PROBLEM: daemon" not in down.stdout  # the daemon is alive, waiting for its mailbox
        private_dovecot.start()
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
