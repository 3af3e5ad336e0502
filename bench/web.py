"""The web form: how long a submission takes, and whether submissions slow the daemon's intake.

``maild web`` runs as a real process (waitress) on a free loopback port, on a
fresh database shared with the daemon, as it is deployed. One client in the
benchmark process talks HTTP to it over one kept-alive connection, like a
browser: it fetches the form (for the CSRF token, its session cookie and the
request id), then posts it with the referente's PIN; only the POST is timed,
from the request's first byte to the response's last, and it counts only if
the page shows a ticket.

The intake comparison runs ``maild run --once`` over the same backlog twice,
with the form process up in both runs: once left alone, once while the client
submits the form at a steady pace (its responses timed too). The two runs of a
pair are alternated, so neither always goes first.
"""

from __future__ import annotations

import http.client
import re
import statistics
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.backlog import messages
from bench.harness import BenchError, Timed, World, maild, prepare_database, run_timed, seed, tail, world
from bench.latency import percentile
from tests.servers import ServerEnv, free_port, port_open, wait_until
from tests.web_kit import REFERENTE_HASH, REFERENTE_PIN, USERS_HASH

START_TIMEOUT = 60.0
SUBMIT_TIMEOUT = 300.0
"""Longest the timed submissions may take together; the run stops there and says how many it made."""
HTTP_TIMEOUT = 30.0
_HIDDEN = re.compile(r'name="(csrf_token|request_id)" value="([^"]*)"')
_TICKET = re.compile(r'<strong id="ticket">([A-Z]+-\d{4}-\d{6})</strong>')
REQUEST = {"administration": "Ateneo", "pin": REFERENTE_PIN, "name": "Anna Verdi",
           "email": "anna.verdi@ateneo.example.it", "category": "anagrafica", "subject": "Telefono in rubrica",
           "description": "Vorrei aggiornare il mio numero di telefono in rubrica.", "lang": "it"}
"""What the client types: the referente's PIN (its acknowledgment goes to the referente, whatever the address)."""


@dataclass(frozen=True, slots=True)
class WebRun:
    """Timed submissions of the form, one after the other, nothing else running."""

    database: str
    submissions: int
    seconds: float
    median: float
    p95: float
    worst: float


@dataclass(frozen=True, slots=True)
class IntakePair:
    """``maild run --once`` over one backlog, alone and beside a steady stream of submissions."""

    messages: int
    interval: float
    alone_rate: float
    beside_rate: float
    alone_cpu_ms: float
    """CPU milliseconds per message of maild (worker and sender included), alone."""
    beside_cpu_ms: float
    """The same beside the form: the acknowledgments of the form's tickets are sent by the daemon too."""
    submissions: int
    """Submissions answered while the daemon ran."""
    beside_median: float
    """Median response time of those submissions."""

    @property
    def ratio(self) -> float:
        return self.beside_rate / self.alone_rate


# ---------------------------------------------------------------- the client


class FormClient:
    """One browser-like client: a kept-alive connection, the session cookie, the form's hidden fields."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
        self._cookie = ""

    def close(self) -> None:
        self._conn.close()

    def _request(self, method: str, body: str | None = None) -> tuple[int, str]:
        headers = {"Cookie": self._cookie} if self._cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self._conn.request(method, "/?lang=it" if method == "GET" else "/", body=body, headers=headers)
        response = self._conn.getresponse()
        page = response.read().decode("utf-8", "replace")
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self._cookie = cookie.split(";", 1)[0]
        return response.status, page

    def submit(self) -> float:
        """Fetch the form, then post it: the seconds the POST took, once its page shows a ticket."""
        status, page = self._request("GET")
        hidden = dict(_HIDDEN.findall(page))
        if status != 200 or set(hidden) != {"csrf_token", "request_id"}:
            raise BenchError(f"the form page came back {status} without its hidden fields")
        body = urllib.parse.urlencode({**REQUEST, **hidden})
        started = time.monotonic()
        status, page = self._request("POST", body)
        took = time.monotonic() - started
        if status != 200 or not _TICKET.search(page):
            raise BenchError(f"a submission came back {status} without a ticket: {page[:500]}")
        return took


@dataclass
class Stream:
    """Submissions at a steady pace in a thread, until stopped: each one's response time."""

    port: int
    interval: float
    times: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        client = FormClient(self.port)
        try:
            start = time.monotonic()
            index = 0
            while not self.stop.is_set():
                pause = start + index * self.interval - time.monotonic()
                if pause > 0 and self.stop.wait(pause):
                    break
                self.times.append(client.submit())
                index += 1
        except BaseException as exc:  # reported by the caller, never lost in the thread
            self.error = exc
        finally:
            client.close()


# ---------------------------------------------------------------- the form process


def add_web(w: World, port: int) -> None:
    """The configuration the form needs beside the daemon's: PIN hashes for the Administration, the address."""
    text = w.config.read_text(encoding="utf-8")
    if not text.rstrip().endswith("]"):  # the last table must be the Administration the keys belong to
        raise BenchError("unexpected configuration layout: the Administration is not the last table")
    text += (f'pin_referente_hash = "{REFERENTE_HASH}"\npin_users_hash = "{USERS_HASH}"\n\n'
             f'[web]\nlisten = "127.0.0.1:{port}"\n')
    w.config.write_text(text, encoding="utf-8")


@contextmanager
def web_form(w: World) -> Iterator[int]:
    """``maild web`` serving ``w``'s database on a free loopback port, stopped afterwards; its port."""
    port = free_port()
    add_web(w, port)
    log = w.workdir / "web.log"
    with log.open("ab") as out:
        process = subprocess.Popen(maild("web", config=w.config), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        if not wait_until(lambda: process.poll() is not None or port_open("127.0.0.1", port, 0.5), START_TIMEOUT):
            raise BenchError(f"maild web did not listen within {START_TIMEOUT:.0f} s: {tail(log)}")
        if process.poll() is not None:
            raise BenchError(f"maild web exited {process.returncode}: {tail(log)}")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- the runs


def submissions_run(env: ServerEnv, workdir: Path, database: str, count: int) -> WebRun:
    """``count`` submissions, one after the other, on a fresh database; at most ``SUBMIT_TIMEOUT`` seconds."""
    with world(env, workdir, database) as w:
        prepare_database(w)
        with web_form(w) as port:
            client = FormClient(port)
            try:
                client.submit()  # the first request of a process warms it up: not a figure
                times: list[float] = []
                started = time.monotonic()
                while len(times) < count and time.monotonic() - started < SUBMIT_TIMEOUT:
                    times.append(client.submit())
                seconds = time.monotonic() - started
            finally:
                client.close()
        tickets = w.rows("SELECT COUNT(*) FROM tickets WHERE channel = 'web'")[0][0]
        if tickets != len(times) + 1:
            raise BenchError(f"{len(times) + 1} submissions answered but {tickets} web tickets recorded")
        return WebRun(database, len(times), seconds, statistics.median(times), percentile(times, 95), max(times))


def intake_pair(env: ServerEnv, workdir: Path, count: int, interval: float, *, beside_first: bool) -> IntakePair:
    """``maild run --once`` over ``count`` messages alone and beside submissions every ``interval`` s (SQLite)."""
    runs: dict[bool, tuple[Timed, list[float]]] = {}
    for with_form in (beside_first, not beside_first):
        runs[with_form] = _intake_run(env, workdir / ("beside" if with_form else "alone"), count,
                                      interval if with_form else None)
    (alone, _), (beside, times) = runs[False], runs[True]
    if not times:
        raise BenchError("no submission was answered while the daemon ran")
    return IntakePair(count, interval, count / alone.seconds, count / beside.seconds, alone.cpu_s * 1000 / count,
                      beside.cpu_s * 1000 / count, len(times), statistics.median(times))


def _intake_run(env: ServerEnv, workdir: Path, count: int, interval: float | None) -> tuple[Timed, list[float]]:
    """One timed ``run --once`` with the form up; with ``interval``, submitted to meanwhile."""
    with world(env, workdir, "sqlite") as w:
        seed(w, messages(count, f"web-intake-{workdir.name}"))
        prepare_database(w)
        with web_form(w) as port:
            stream = Stream(port, interval or 0.0)
            thread = threading.Thread(target=stream.run, name="web-stream", daemon=True)
            if interval is not None:
                thread.start()
            log = workdir / "maild.log"
            try:
                done = run_timed(maild("run", "--once", config=w.config), log)
            finally:
                stream.stop.set()
                if interval is not None:
                    thread.join(timeout=HTTP_TIMEOUT + 5)
        if stream.error is not None:
            raise BenchError(f"the web client failed: {stream.error!r}")
        if done.returncode != 0:
            raise BenchError(f"maild run --once exited {done.returncode}: {tail(log)}")
        check_email_drained(w, count, log)
        return done, stream.times


def check_email_drained(w: World, count: int, log: Path) -> None:
    """The daemon's work is all done, whatever the form added: like ``harness.check_drained``, on e-mail only."""
    counts = w.counts()
    if counts["INBOX"] != 0 or counts["Processed"] != count:
        raise BenchError(f"folders after the run: {counts}, expected {count} processed\n{tail(log)}")
    recorded = w.rows("SELECT COUNT(*) FROM messages WHERE channel = 'email'")[0][0]
    answered = w.rows("SELECT COUNT(*) FROM messages WHERE channel = 'email' AND decision <> 'ignored'")[0][0]
    tickets = w.rows("SELECT COUNT(*) FROM tickets WHERE channel = 'email'")[0][0]
    if recorded != count or tickets != answered:
        raise BenchError(f"{recorded} e-mails and {tickets} tickets recorded, expected {count} and {answered}")
    unsent = w.rows("SELECT COUNT(*) FROM outbox o JOIN messages m ON o.source_message_id = m.id "
                    "WHERE m.channel = 'email' AND o.state <> 'sent'")[0][0]
    sent = w.rows("SELECT COUNT(*) FROM outbox WHERE state = 'sent'")[0][0]
    accepted = w.sink.count()
    if unsent or accepted != sent:
        raise BenchError(f"{unsent} replies to e-mail left unsent; {sent} sent but the SMTP server accepted {accepted}")
