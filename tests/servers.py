"""Test access to the real servers ``scripts/servers.sh`` runs, and an in-process SMTP server.

``scripts/servers.sh start`` writes the connection facts to ``var/servers/env``;
everything here reads that file. When it is missing or a server does not
answer, the fixtures FAIL (never skip) with the command that fixes it.

* Dovecot: ``new_imap_account`` makes a fresh user ``test-<random>@example.test``
  (password ``pw``, admitted by Dovecot's static passdb): an empty INBOX plus
  Processed and Quarantine, seen by no other test. ``PrivateDovecot`` is a whole
  Dovecot of a test's own, configured like the shared one, to stop and restart mid-test.
* PostgreSQL: ``create_database`` / ``drop_database`` give a test its own database;
  ``PrivatePostgres`` a whole cluster of its own, to stop and start mid-test.
* ``SmtpCapture``: an aiosmtpd server on a fixed free port that records every
  envelope; it can be stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from imapclient import IMAPClient
from psycopg import sql

from maild.settings import Mailbox

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("MAILD_SERVERS_DIR", REPO / "var" / "servers"))
ENV_FILE = STATE_DIR / "env"
START_HINT = "run `bash scripts/servers.sh start`"
SEED_CHUNK = 500
"""Messages per MULTIAPPEND command: ~1,000 msg/s, against ~170 with one APPEND each."""


# ---------------------------------------------------------------- environment


@dataclass(frozen=True, slots=True)
class ServerEnv:
    """Connection facts written by scripts/servers.sh."""

    imap_host: str
    imap_port: int
    imaps_port: int
    ca_file: Path
    helpdesk_user: str
    helpdesk_password: str
    user_password: str
    dovecot_conf: Path
    mail_root: Path
    pg_host: str
    pg_port: int
    pg_user: str
    pg_password: str
    pg_db: str

    def pg_url(self, database: str | None = None) -> str:
        """SQLAlchemy URL of ``database`` (default: the shared ``maild`` database)."""
        return (f"postgresql+psycopg://{self.pg_user}:{self.pg_password}"
                f"@{self.pg_host}:{self.pg_port}/{database or self.pg_db}")

    def pg_conninfo(self, database: str | None = None) -> str:
        """libpq connection string, for psycopg directly."""
        return (f"host={self.pg_host} port={self.pg_port} user={self.pg_user} "
                f"password={self.pg_password} dbname={database or self.pg_db}")


def parse_env(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def load_env(path: Path = ENV_FILE) -> ServerEnv:
    """Read the env file or fail the test with the command that writes it."""
    try:
        values = parse_env(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pytest.fail(f"{path} not found: the test servers were never started; {START_HINT}", pytrace=False)
    try:
        return _server_env(values)
    except KeyError as exc:
        pytest.fail(f"{path} lacks {exc.args[0]}: it is stale; {START_HINT}", pytrace=False)


def _server_env(v: Mapping[str, str]) -> ServerEnv:
    return ServerEnv(
        imap_host=v["MAILD_TEST_IMAP_HOST"], imap_port=int(v["MAILD_TEST_IMAP_PORT"]),
        imaps_port=int(v["MAILD_TEST_IMAPS_PORT"]), ca_file=Path(v["MAILD_TEST_IMAP_CA_FILE"]),
        helpdesk_user=v["MAILD_TEST_IMAP_USER"], helpdesk_password=v["MAILD_TEST_IMAP_PASSWORD"],
        user_password=v["MAILD_TEST_IMAP_USER_PASSWORD"], dovecot_conf=Path(v["MAILD_TEST_DOVECOT_CONF"]),
        mail_root=Path(v["MAILD_TEST_DOVECOT_MAIL"]),
        pg_host=v["MAILD_TEST_PG_HOST"], pg_port=int(v["MAILD_TEST_PG_PORT"]),
        pg_user=v["MAILD_TEST_PG_USER"], pg_password=v["MAILD_TEST_PG_PASSWORD"], pg_db=v["MAILD_TEST_PG_DB"],
    )


def port_open(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_port(name: str, host: str, port: int) -> None:
    if not port_open(host, port):
        pytest.fail(f"{name} is not running on {host}:{port}; {START_HINT}", pytrace=False)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Hang guard: poll ``predicate`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval)
    return True


# ---------------------------------------------------------------- IMAP


@dataclass(frozen=True, slots=True)
class ImapAccount:
    """A fresh Dovecot user: INBOX empty, Processed and Quarantine present."""

    host: str
    port: int
    """Plain port offering STARTTLS."""
    imaps_port: int
    user: str
    password: str
    ca_file: Path
    home: Path
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"

    def mailbox(self, **changes: Any) -> Mailbox:
        """``[mailbox]`` settings for this account (STARTTLS, verified); change by keyword."""
        base = Mailbox(kind="imap", host=self.host, port=self.port, tls="starttls", username=self.user,
                       password=self.password, ca_file=self.ca_file, idle=True, poll_interval=1.0,
                       processed_folder=self.processed_folder, quarantine_folder=self.quarantine_folder)
        return replace(base, **changes)

    def connect(self) -> Any:
        """A logged-in IMAPClient on the account (STARTTLS), for the test's own checks."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        client = IMAPClient(self.host, self.port, ssl=False, timeout=30)
        client.starttls(context)
        client.login(self.user, self.password)
        return client


def new_imap_account(env: ServerEnv) -> ImapAccount:
    return imap_user(env.imap_host, env.imap_port, env.imaps_port, env.ca_file, env.mail_root, env.user_password)


def imap_user(host: str, port: int, imaps_port: int, ca_file: Path, mail_root: Path,
              password: str = "pw") -> ImapAccount:
    """A fresh ``test-<random>@example.test`` on the Dovecot at ``host:port``, logged in once."""
    user = f"test-{uuid.uuid4().hex[:16]}@example.test"
    local, _, domain = user.partition("@")
    account = ImapAccount(host=host, port=port, imaps_port=imaps_port, user=user, password=password,
                          ca_file=ca_file, home=mail_root / domain / local)
    with account.connect() as client:  # first login creates the home and the auto folders
        present = {folder[2] for folder in client.list_folders()}
    missing = {account.processed_folder, account.quarantine_folder} - present
    assert not missing, f"Dovecot did not auto-create {missing}"
    return account


def remove_imap_account(account: ImapAccount) -> None:
    """Delete the user's mail directory (its processes are gone once its clients logged out)."""
    shutil.rmtree(account.home, ignore_errors=True)


def seed_imap(account: ImapAccount, messages: Sequence[bytes], folder: str = "INBOX") -> None:
    """Append ``messages`` in order with MULTIAPPEND, SEED_CHUNK per command."""
    with account.connect() as client:
        for start in range(0, len(messages), SEED_CHUNK):
            client.multiappend(folder, list(messages[start:start + SEED_CHUNK]))


def append_one(account: ImapAccount, message: bytes, folder: str = "INBOX") -> None:
    """One plain APPEND from its own connection, as a delivering MTA would."""
    with account.connect() as client:
        client.append(folder, message)


def folder_uids(account: ImapAccount, folder: str) -> list[int]:
    with account.connect() as client:
        client.select_folder(folder, readonly=True)
        return sorted(client.search(["ALL"]))


def folder_counts(account: ImapAccount) -> dict[str, int]:
    """Messages in INBOX, Processed and Quarantine."""
    folders = ("INBOX", account.processed_folder, account.quarantine_folder)
    with account.connect() as client:
        return {f: int(client.folder_status(f, ["MESSAGES"])[b"MESSAGES"]) for f in folders}


def make_message(index: int, *, body_size: int = 0, tag: str = "seed") -> bytes:
    """A small distinct RFC 5322 message with CRLF line ends (what IMAP stores)."""
    body = f"Messaggio numero {index}.\r\n" + ("x" * 76 + "\r\n") * (body_size // 78)
    return (
        f"From: Utente {index} <utente{index}@ateneo.example.it>\r\n"
        f"To: helpdesk@example.test\r\n"
        f"Subject: {tag} {index}\r\n"
        f"Message-ID: <{tag}-{index}-{uuid.uuid4().hex}@ateneo.example.it>\r\n"
        f"Date: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
        f"\r\n{body}"
    ).encode()


DOVECOT_TEMPLATES = REPO / "scripts" / "dovecot"
"""The configuration ``scripts/servers.sh`` renders for the shared Dovecot; a private one renders it too."""


class PrivateDovecot:
    """A Dovecot of the test's own, configured from the shared one's template but in a temporary
    folder on free ports, which the test may stop, start and restart mid-run; the shared one is never
    touched. Root only: Dovecot's master runs as root and hands mail to ``vmail``."""

    def __init__(self) -> None:
        if shutil.which("dovecot") is None:
            pytest.fail(f"dovecot is not installed; {START_HINT}", pytrace=False)
        # Under /tmp: reachable by vmail and dovecot, and short enough for Dovecot's socket paths.
        self.dir = Path(tempfile.mkdtemp(prefix="maild-dovecot-"))
        self.dir.chmod(0o755)
        self.host = "127.0.0.1"
        self.port, self.imaps_port = free_port(), free_port()
        self.conf = self.dir / "dovecot.conf"
        self.mail_root = self.dir / "mail"
        self._pidfile = self.dir / "run" / "master.pid"
        for name in ("lib", "log", "mail", "run", "tls"):
            (self.dir / name).mkdir()
        shutil.chown(self.mail_root, "vmail", "vmail")
        self.ca_file, _ = self_signed_tls(self.dir / "tls")
        users = self.dir / "users"
        shutil.copyfile(DOVECOT_TEMPLATES / "users.in", users)
        users.chmod(0o640)
        shutil.chown(users, group="dovecot")
        self.conf.write_text(self._render(), encoding="utf-8")

    def _render(self) -> str:
        text = (DOVECOT_TEMPLATES / "dovecot.conf.in").read_text(encoding="utf-8")
        for name, value in (("STATE_DIR", self.dir), ("BASE_DIR", self.dir / "run"), ("IMAP_PORT", self.port),
                            ("IMAPS_PORT", self.imaps_port)):
            text = text.replace(f"@{name}@", str(value))
        # The command an imap process serves shows in its title: a test sees the daemon's IDLE there.
        return text + "\nverbose_proctitle = yes\n"

    def pid(self) -> int | None:
        try:
            pid = int(self._pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        comm = Path(f"/proc/{pid}/comm")
        return pid if comm.exists() and comm.read_text().strip() == "dovecot" else None

    def running(self) -> bool:
        return self.pid() is not None and port_open(self.host, self.port)

    def start(self, timeout: float = 60.0) -> None:
        if self.running():
            return
        # The master keeps stderr open: give it a file, never a pipe we would wait on.
        with tempfile.TemporaryFile() as err:
            done = subprocess.run(["dovecot", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err, check=False)
            err.seek(0)
            message = err.read().decode(errors="replace")
        assert done.returncode == 0, f"dovecot did not start: {message}"
        # The master listens before it writes its pid file: both, or a stop now would find no master.
        up = wait_until(lambda: self.pid() is not None and port_open(self.host, self.port, 0.2)
                        and port_open(self.host, self.imaps_port, 0.2), timeout)
        assert up, f"Dovecot did not open its ports within {timeout} s; log: {self.dir / 'log' / 'dovecot.log'}"

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the master AND its children: Dovecot's own shutdown lets a logged-in imap
        process serve its client on, so without this no connection would notice."""
        pid = self.pid()
        if pid is None:
            return
        if os.getpgid(pid) == pid:  # the daemonized master leads the group of all its processes
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
        gone = wait_until(lambda: not Path(f"/proc/{pid}").exists() and not self._group_alive(pid)
                          and not port_open(self.host, self.port, 0.2), timeout)
        assert gone, f"Dovecot (pid {pid}) did not stop within {timeout} s"

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def new_account(self) -> ImapAccount:
        """A fresh, empty mailbox on this Dovecot (INBOX, Processed, Quarantine)."""
        return imap_user(self.host, self.port, self.imaps_port, self.ca_file, self.mail_root)

    def idling(self, account: ImapAccount) -> bool:
        """Whether an imap process of this Dovecot serves ``account`` in IDLE now."""
        pid = self.pid()
        return pid is not None and any(
            account.user in title and title.endswith(" IDLE]") for title in self._titles(pid))

    @staticmethod
    def _titles(group: int) -> list[str]:
        titles = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with suppress(OSError, ValueError):
                if os.getpgid(int(proc.name)) == group:
                    titles.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip())
        return titles

    @staticmethod
    def _group_alive(group: int) -> bool:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True


# ---------------------------------------------------------------- PostgreSQL


def create_database(env: ServerEnv, prefix: str = "maild_test") -> str:
    """Create an empty database owned by the maild role; returns its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(env.pg_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(env: ServerEnv, name: str) -> None:
    """Drop ``name``, disconnecting whatever the test left connected."""
    with psycopg.connect(env.pg_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


PG_BIN = Path("/usr/lib/postgresql/15/bin")
"""The PostgreSQL that ``scripts/servers.sh`` installs."""


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder, a free port), which the
    test may stop and start mid-run; the shared one is never touched. Root only: it runs as postgres."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="maild-pg-"))  # under /tmp: reachable by postgres
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self._postgres(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                       "--auth=trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._postgres(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.dir / "log", "-w", "-t", "60",
                       "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected, as by a restart; ``immediate``: a crash)."""
        self._postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _postgres(self, *command: str | Path) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)], stdin=subprocess.DEVNULL,
                              capture_output=True, check=False)
        assert done.returncode == 0, f"{command[0]} failed: {done.stderr.decode(errors='replace')}"


# ---------------------------------------------------------------- SMTP


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (aiosmtpd probes the port it is given, so 0 will not do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class CapturedMail:
    """One accepted transaction. ``mail_from`` is ``"<>"`` for the null sender."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]
    peer: str
    """``host:port`` of the client: equal for messages sent over one connection."""


@dataclass
class _Handler:
    """aiosmtpd hooks: record accepted mail; refuse as the test asks."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    mails: list[CapturedMail] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    data_delay: float = 0.0
    """Seconds before each DATA of the first connection to send one is answered: a slow link."""
    slow_peer: Any = None
    mail_commands: int = 0
    data_commands: int = 0
    refuse_every: int = 0
    """Refuse every ``refuse_every``-th DATA with ``every_reply`` (0: none): a greylisting relay."""
    every_reply: str = "451 4.3.0 try again later"
    on_accept: Callable[[int], None] | None = None
    """Called with the count of accepted messages before each 250 to DATA: a fault at a chosen moment."""

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          mail_options: list[str]) -> str:
        with self.lock:
            self.mail_commands += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        with self.lock:
            reply = self.rcpt_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.data_delay:
            with self.lock:
                self.slow_peer = self.slow_peer or session.peer
            if session.peer == self.slow_peer:
                await asyncio.sleep(self.data_delay)
        with self.lock:
            if self.data_reply is not None:
                return self.data_reply
            self.data_commands += 1
            if self.refuse_every and self.data_commands % self.refuse_every == 0:
                return self.every_reply
            peer = session.peer
            self.mails.append(CapturedMail(
                mail_from=envelope.mail_from, rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(envelope.original_content), mail_options=tuple(envelope.mail_options),
                peer=f"{peer[0]}:{peer[1]}",
            ))
            accepted, hook = len(self.mails), self.on_accept
        if hook is not None:
            hook(accepted)  # outside the lock; the client waits for its 250 meanwhile
        return "250 OK"


class SmtpCapture:
    """An in-process SMTP server on a fixed port that records what it accepts (thread-safe).

    ``stop()`` then ``start()`` keeps the port, so a transport configured once
    sees the server go down and come back. ``refuse_rcpt`` and ``refuse_data``
    make it answer like a real MTA refusing (e.g. ``"550 5.1.1 no such user"``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, **controller: Any) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._controller_args = controller
        self._handler = _Handler()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is not None:
            return
        controller = Controller(self._handler, hostname=self.host, port=self.port, **self._controller_args)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def messages(self) -> list[CapturedMail]:
        with self._handler.lock:
            return list(self._handler.mails)

    def answer_data_after(self, seconds: float) -> None:
        """Answer every DATA of the first connection that sends one only after ``seconds``."""
        self._handler.data_delay = seconds

    @property
    def mail_commands(self) -> int:
        """MAIL commands received so far (accepted or not by later steps)."""
        with self._handler.lock:
            return self._handler.mail_commands

    def refuse_rcpt(self, address: str, reply: str) -> None:
        with self._handler.lock:
            self._handler.rcpt_replies[address.lower()] = reply

    def refuse_data(self, reply: str | None) -> None:
        with self._handler.lock:
            self._handler.data_reply = reply

    def refuse_data_every(self, every: int, reply: str = "451 4.3.0 try again later") -> None:
        """Refuse one DATA in ``every`` (counting every DATA, retries too) with ``reply``."""
        with self._handler.lock:
            self._handler.refuse_every, self._handler.every_reply = every, reply

    @property
    def refused_data(self) -> int:
        """DATA commands refused by ``refuse_data_every`` so far."""
        with self._handler.lock:
            every = self._handler.refuse_every
            return self._handler.data_commands // every if every else 0

    def on_accept(self, hook: Callable[[int], None] | None) -> None:
        """Run ``hook(accepted so far)`` before each 250 to DATA (in the server's thread)."""
        with self._handler.lock:
            self._handler.on_accept = hook

    def wait_for(self, count: int, timeout: float = 10.0) -> list[CapturedMail]:
        """Hang guard for asynchronous senders: the messages once ``count`` arrived or time ran out."""
        wait_until(lambda: len(self.messages) >= count, timeout)
        return self.messages


def self_signed_tls(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost made with openssl, for TLS tests: (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context

