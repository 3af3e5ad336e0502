"""The IMAP mail source: drain a folder, file messages away, IDLE for more.

Design choices, and why:

* Everything in the watched folder is work to do. Processed and quarantined
  messages are *moved out*, so the source lists all UIDs (``NOT DELETED``)
  instead of trusting ``\\Seen``, which people and other clients change.
* Sizes first (``RFC822.SIZE``), then bodies with ``BODY.PEEK[]`` in UID
  batches: an oversize message is never downloaded, and nothing sets ``\\Seen``.
  UID lists are chunked because servers refuse very long command lines.
* ``source_id`` is ``"<uidvalidity>:<uid>"`` so a folder rebuilt under a new
  UIDVALIDITY cannot alias old UIDs in the exactly-once store.
* ``wait()`` is the one place that sleeps: IDLE when offered (re-issued well
  before the 29 minutes RFC 2177 allows), polling every ``poll_interval``
  otherwise, and, when the connection is gone, reconnection with exponential
  backoff and jitter. Other calls connect on demand and raise
  ``SourceUnavailable`` at once, so a daemon loop of ``fetch`` + ``wait`` gets
  backoff without knowing about it.
* A ``wait()`` that times out leaves its IDLE open for the next one: a daemon
  waits in one-second slices to notice a stop request, and ending and
  re-issuing the IDLE (with its NOOP + SEARCH race check) every slice would be
  four commands a second on an idle mailbox, forever. Every other command
  reaches the connection through ``_session()``, which ends an open IDLE first.
* TCP keepalive probes a connection that stays silent for the length of an
  IDLE, so a peer that vanished without a word is noticed in about two
  minutes, not at the next renewal.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from maild.errors import SourceError, SourceUnavailable
from maild.settings import Mailbox
from maild.sources import Incoming

log = logging.getLogger("maild.poller")

IDLE_RENEW = 28 * 60.0
"""Seconds after which an IDLE is ended and re-issued (RFC 2177: before 29 minutes)."""
SOCKET_TIMEOUT = 60.0
KEEPALIVE = (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4))
"""First probe after a minute of silence, then every 15 s; four unanswered probes end the connection."""
FETCH_BYTES = 32 * 1024 * 1024
"""Upper bound of the bodies downloaded by one FETCH, whatever batch_size says."""
_TRANSIENT_CODES = ("[UNAVAILABLE]", "[INUSE]", "[LIMIT]", "[SERVERBUG]")
"""RFC 5530 response codes that say "try again later"."""


def _transient(text: str) -> bool:
    """A "try again later" code, or a BYE: a server greets with BYE while it shuts down (RFC 9051 7.1.5)."""
    return any(c in text for c in _TRANSIENT_CODES) or "* BYE" in text


def _login_interrupted(exc: LoginError) -> bool:
    """The connection ended or the server said BYE during LOGIN, as when it shuts down: no answer to the
    credentials (imapclient turns every fault of the command, this one too, into a LoginError)."""
    return isinstance(exc.__context__, IMAPClientAbortError)


Clock = Callable[[], float]
Sleep = Callable[[float], object]


class Backoff:
    """Exponential backoff with "equal jitter": each delay is in [ceiling/2, ceiling].

    Jitter keeps many daemons (or a daemon and its bench) from reconnecting in
    lock step after a server restart; the lower half bound keeps the growth.
    """

    def __init__(self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempts, 32))
        self.attempts += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0


def _aware(moment: datetime) -> datetime:
    """An INTERNALDATE in UTC, a stdlib time zone that pickles (imapclient's FixedOffset does not cross to the
    triage worker); a naive (normalised, local) time is read as local time."""
    return moment.astimezone(UTC)


def tls_context(ca_file: object | None) -> ssl.SSLContext:
    """A verifying client context; ``ca_file`` replaces the system trust store."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def open_client(box: Mailbox, timeout: float = SOCKET_TIMEOUT) -> Any:
    """Connect, secure and log in as ``box`` says; library errors pass through."""
    context = tls_context(box.ca_file)
    client = IMAPClient(box.host, box.port, ssl=box.tls == "ssl", ssl_context=context, timeout=timeout)
    quiet_imaplib(client)
    client.normalise_times = False  # INTERNALDATE keeps its offset
    try:
        keep_alive(client.socket())
        if box.tls == "starttls":
            client.starttls(context)
        client.login(box.username, box.password)
    except BaseException:
        _shutdown(client)
        raise
    return client


def quiet_imaplib(client: Any) -> None:
    """Stop imaplib from formatting every response it reads, unless its log is wanted.

    IMAPClient sets the underlying ``imaplib.IMAP4.debug`` to 5 so that imaplib
    logs through the ``imapclient.imaplib`` logger; imaplib then builds the
    ``%r`` of every untagged response, message bodies included, before the
    logger drops it at any level above DEBUG: two more copies of every message,
    and the CPU to escape it.
    """
    imap = getattr(client, "_imap", None)
    if imap is not None and not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        imap.debug = 0


def keep_alive(sock: socket.socket) -> None:
    """Have the kernel probe the connection while it is quiet (see KEEPALIVE).

    An open IDLE sends nothing for up to IDLE_RENEW: a server host that crashed,
    or a NAT or firewall that forgot the connection, would otherwise go
    unnoticed, and new mail unannounced, until the next renewal. A failed probe
    makes the socket readable with an error, which ``wait()`` handles like any
    lost connection. The finer options are Linux ones; elsewhere the system's
    defaults apply.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE:
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def ensure_folders(client: Any, folders: Iterable[str]) -> None:
    """Create each folder that does not exist yet (another client may race us)."""
    for folder in folders:
        if client.folder_exists(folder):
            continue
        try:
            client.create_folder(folder)
            log.info("created IMAP folder %s", folder)
        except IMAPClientError:
            if not client.folder_exists(folder):
                raise


class ImapSource:
    """``MailSource`` over one IMAP folder (see the module docstring).

    One connection, owned by one thread: IMAP commands on a connection are sequential.
    """

    def __init__(
        self,
        settings: Mailbox,
        *,
        timeout: float = SOCKET_TIMEOUT,
        connect: Callable[[Mailbox], Any] | None = None,
        backoff: Backoff | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        use_move: bool | None = None,
    ) -> None:
        """``connect``/``sleep``/``clock`` are injectable for tests; ``sleep`` may be
        ``threading.Event.wait`` so a daemon can interrupt the wait.
        ``use_move=False`` forces COPY + \\Deleted + UID EXPUNGE even where MOVE is offered."""
        self._box = settings
        self._connect = connect or (lambda box: open_client(box, timeout))
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._clock = clock
        self._use_move = use_move
        self._client: Any = None
        """The connection. Commands reach it through ``_session()`` only (an IDLE may be open)."""
        self._idle_since: float | None = None
        """When the IDLE open on the connection began (``clock`` time), or None."""
        self._uidvalidity: int | None = None
        self._max_uid = 0
        self._retry_at = 0.0
        self._where = f"IMAP {settings.username}@{settings.host}:{settings.port}/{settings.folder}"

    @property
    def uidvalidity(self) -> int | None:
        """UIDVALIDITY of the folder at the last (re)connection."""
        return self._uidvalidity

    @property
    def connected(self) -> bool:
        return self._client is not None

    # ------------------------------------------------------------ MailSource

    def fetch(self, max_bytes: int) -> Iterator[Incoming]:
        client = self._session()
        with self._guard("search"):
            client.noop()  # see _new_mail: a session sees others' deliveries only after a sync
            uids = sorted(client.search(["NOT", "DELETED"]))
        state = str(self._uidvalidity)
        if uids:
            self._max_uid = max(self._max_uid, uids[-1])
        for chunk in _chunks(uids, self._box.batch_size):
            sizes, arrivals = self._sizes(client, chunk)
            for batch in _body_batches(chunk, sizes, max_bytes):
                bodies = self._bodies(client, [uid for uid in batch if sizes[uid] <= max_bytes])
                for uid in batch:
                    raw = bodies.get(uid) if sizes[uid] <= max_bytes else None
                    if raw is None and sizes[uid] <= max_bytes:
                        continue  # expunged by someone else meanwhile
                    yield Incoming(f"{state}:{uid}", sizes[uid], raw, state, arrivals.get(uid))

    def mark_processed(self, *items: Incoming) -> None:
        self._move(items, self._box.processed_folder)

    def quarantine(self, *items: Incoming) -> None:
        self._move(items, self._box.quarantine_folder)

    def wait(self, timeout: float) -> bool:
        """Never raises SourceUnavailable: a lost connection is retried here, with backoff."""
        deadline = self._clock() + timeout
        if self._client is None:
            return self._reconnect(deadline)
        try:
            if self._idle_since is not None:
                return self._idle(deadline)  # nothing but this IDLE since the last check: no race to close
            if self._new_mail():
                return True
            if self._box.idle and self._client.has_capability("IDLE"):
                return self._idle(deadline)
            return self._poll(deadline)
        except SourceUnavailable as exc:
            log.warning("%s: connection lost (%s); reconnecting", self._where, exc)
            return self._reconnect(deadline)

    def close(self) -> None:
        if self._client is not None:
            with suppress(SourceError):
                self._session()  # LOGOUT is a command too; a connection that fails here is dropped
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except (IMAPClientError, OSError):
                _shutdown(client)

    # ------------------------------------------------------------ connection

    def _ensure(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            self._client = self._open()
        except SourceUnavailable:
            self._retry_at = self._clock() + self._backoff.next_delay()
            raise
        self._backoff.reset()
        self._retry_at = 0.0
        return self._client

    def _session(self) -> Any:
        """The connected client, ready for a command: the one way commands reach the connection.

        RFC 2177: while an IDLE is in progress the client sends nothing but DONE.
        ``wait()`` leaves its IDLE open between calls, so it is ended here, before
        whatever command comes next (fetch, move, the race check, LOGOUT). What
        the server announced meanwhile needs no reading: a fetch searches anyway,
        and the next ``wait()`` runs the race check because no IDLE is open.
        """
        client = self._ensure()
        if self._idle_since is not None:
            with self._guard("end idle"):
                self._end_idle(client)
        return client

    def _open(self) -> Any:
        client = None
        with self._guard("connect"):
            client = self._connect(self._box)
            try:
                ensure_folders(client, (self._box.processed_folder, self._box.quarantine_folder))
                info = client.select_folder(self._box.folder)
            except BaseException:
                _shutdown(client)
                raise
        uidvalidity = int(info[b"UIDVALIDITY"])
        if self._uidvalidity is not None and uidvalidity != self._uidvalidity:
            log.warning("%s: UIDVALIDITY changed %s -> %s; UIDs start over",
                        self._where, self._uidvalidity, uidvalidity)
            self._max_uid = 0
        self._uidvalidity = uidvalidity
        log.info("%s: connected, UIDVALIDITY %s, %s messages", self._where, uidvalidity, info.get(b"EXISTS"))
        return client

    def _reconnect(self, deadline: float) -> bool:
        while True:
            now = self._clock()
            if now >= self._retry_at:
                try:
                    self._ensure()
                    return True
                except SourceUnavailable as exc:
                    log.warning("%s: unreachable (%s); next attempt in %.1f s",
                                self._where, exc, self._retry_at - now)
            now = self._clock()
            if now >= deadline:
                return False
            self._sleep(min(self._retry_at, deadline) - now)

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._idle_since = None
        if client is not None:
            _shutdown(client)

    def _live(self, client: Any) -> Any:
        """The client a generator started with, unless a fault replaced it meanwhile; ready for a command
        (a ``wait()`` may have run while the generator was suspended)."""
        if self._client is not client:
            raise SourceUnavailable(f"{self._where}: connection was reset during fetch")
        return self._session()

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Translate library faults into the source error contract, dropping the connection."""
        try:
            yield
        except LoginError as exc:
            self._drop()
            text = str(exc)
            if _login_interrupted(exc):
                raise SourceUnavailable(f"{self._where}: login failed: {text}") from exc
            kind = SourceUnavailable if _transient(text) else SourceError
            raise kind(f"{self._where}: login refused: {text}") from exc
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            raise SourceError(f"{self._where}: TLS certificate not trusted: {exc.verify_message}") from exc
        except (IMAPClientAbortError, OSError, EOFError) as exc:
            self._drop()
            raise SourceUnavailable(f"{self._where}: {action} failed: {exc or type(exc).__name__}") from exc
        except IMAPClientError as exc:
            self._drop()
            text = str(exc)
            kind = SourceUnavailable if _transient(text) else SourceError
            raise kind(f"{self._where}: {action} refused: {text}") from exc

    # ------------------------------------------------------------ commands

    def _sizes(self, client: Any, uids: Sequence[int]) -> tuple[dict[int, int], dict[int, datetime]]:
        """Each message's size and its INTERNALDATE (when the server took it in), in one round trip."""
        with self._guard("fetch sizes"):
            data = self._live(client).fetch(uids, ["RFC822.SIZE", "INTERNALDATE"])
        sizes = {uid: int(d[b"RFC822.SIZE"]) for uid, d in data.items() if b"RFC822.SIZE" in d}
        arrivals = {uid: _aware(d[b"INTERNALDATE"]) for uid, d in data.items()
                    if isinstance(d.get(b"INTERNALDATE"), datetime)}
        return sizes, arrivals

    def _bodies(self, client: Any, uids: Sequence[int]) -> dict[int, bytes]:
        if not uids:
            return {}
        with self._guard("fetch bodies"):
            data = self._live(client).fetch(uids, ["BODY.PEEK[]"])
        return {uid: bytes(d[b"BODY[]"]) for uid, d in data.items() if d.get(b"BODY[]") is not None}

    def _move(self, items: Sequence[Incoming], folder: str) -> None:
        """One UID MOVE (or COPY + UID EXPUNGE) for all ``items``: a round trip per batch, not per message."""
        found = [(item, _uid_of(item, self._where)) for item in items]
        if not found:
            return
        client = self._session()
        uids = []
        for item, (validity, uid) in found:
            if validity != str(self._uidvalidity):
                log.warning("%s: %s belongs to an older UIDVALIDITY (now %s); left in place",
                            self._where, item.source_id, self._uidvalidity)
                continue
            uids.append(uid)
        if not uids:
            return
        with self._guard(f"move to {folder}"):
            use_move = self._use_move if self._use_move is not None else client.has_capability("MOVE")
            if use_move:
                self._uid_move(client, uids, folder)
                return
            client.copy(_uid_set(uids), folder)
            client.add_flags(_uid_set(uids), [DELETED], silent=True)
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(_uid_set(uids))
            else:
                client.expunge()

    def _uid_move(self, client: Any, uids: list[int], folder: str) -> None:
        try:
            client.move(_uid_set(uids), folder)
        except IMAPClientError as exc:
            if "EXPUNGEISSUED" not in str(exc):
                raise
            # Another worker moved some of them first (two daemons on one mailbox): those are done.
            # Once this session has seen the expunges, a UID MOVE ignores the missing UIDs.
            log.info("%s: some of %d messages were already moved by another client", self._where, len(uids))
            if len(uids) > 1:
                client.noop()
                try:
                    client.move(_uid_set(uids), folder)
                except IMAPClientError as again:
                    if "EXPUNGEISSUED" not in str(again):
                        raise

    def _new_mail(self) -> bool:
        """True when a UID above the highest one fetched exists (closes the fetch/IDLE race).

        NOOP first: Dovecot shows a session mail delivered by others only after a
        sync, and a SEARCH alone reports it after its own result, too late.
        """
        client = self._session()
        with self._guard("search"):
            client.noop()
            uids = client.search(["UID", f"{self._max_uid + 1}:*", "NOT", "DELETED"])
        return any(uid > self._max_uid for uid in uids)

    def _idle(self, deadline: float) -> bool:
        """IDLE until mail is announced (True) or ``deadline`` passes (False).

        On a timeout the IDLE stays open for the next call (see the module docstring);
        on mail it is ended, so the next ``wait()`` checks again until a fetch took the mail.
        """
        client = self._client
        while (now := self._clock()) < deadline:
            with self._guard("idle"):
                responses = self._idle_step(client, now, deadline)
                mail = any(_announces_mail(r) for r in responses)
                if mail and self._idle_since is not None:
                    self._end_idle(client)
            if mail:
                return True
        return False

    def _idle_step(self, client: Any, now: float, deadline: float) -> list[tuple[Any, ...]]:
        """Begin, renew or listen to the IDLE; the untagged responses the server sent meanwhile."""
        if self._idle_since is None:
            return self._begin_idle(client)
        renew_at = self._idle_since + IDLE_RENEW
        if now >= renew_at:
            return self._end_idle(client)  # the next step begins a new one
        responses = list(client.idle_check(timeout=min(deadline, renew_at) - now))
        if any(_is_bye(r) for r in responses):
            raise IMAPClientAbortError("server said BYE")
        if not responses and _readable(client.socket()):
            # Input the library could not make a line of: the end of the connection (idle_check
            # reports EOF as silence), or part of a TLS record. DONE tells which: it fails on a
            # lost connection and returns whatever the server sent otherwise.
            return self._end_idle(client)
        return responses

    def _begin_idle(self, client: Any) -> list[tuple[Any, ...]]:
        client.idle()
        self._idle_since = self._clock()
        if _buffered_input(client):
            # The server sent what was pending along with "+ idling"; imaplib read it into its
            # buffer, where idle_check (which waits on the socket) cannot see it. DONE reads it.
            return self._end_idle(client)
        return []

    def _end_idle(self, client: Any) -> list[tuple[Any, ...]]:
        """Send DONE; the untagged responses received since the last ``idle_check``."""
        self._idle_since = None
        return list(client.idle_done()[1])

    def _poll(self, deadline: float) -> bool:
        while (remaining := deadline - self._clock()) > 0:
            self._sleep(min(self._box.poll_interval, remaining))
            if self._new_mail():
                return True
        return False


def _uid_of(item: Incoming, where: str) -> tuple[str, int]:
    validity, sep, uid_text = item.source_id.partition(":")
    if not sep or not uid_text.isdigit():
        raise SourceError(f"{where}: {item.source_id!r} is not an IMAP source id")
    return validity, int(uid_text)


def _uid_set(uids: Iterable[int]) -> str:
    """``1:3,7`` for 1, 2, 3 and 7: only runs of consecutive UIDs become ranges, so the
    set names exactly these messages and nothing that arrived or stays in between."""
    runs: list[list[int]] = []
    for uid in sorted(set(uids)):
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in runs)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _body_batches(uids: Sequence[int], sizes: dict[int, int], max_bytes: int) -> Iterator[list[int]]:
    """Split ``uids`` (dropping vanished ones) so one body FETCH stays under FETCH_BYTES."""
    batch: list[int] = []
    total = 0
    for uid in uids:
        if uid not in sizes:
            continue
        size = sizes[uid] if sizes[uid] <= max_bytes else 0
        if batch and total + size > FETCH_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


def _readable(sock: socket.socket) -> bool:
    """Whether input, an end of file or an error waits on ``sock`` (without waiting)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _buffered_input(client: Any) -> bool:
    """Whether imaplib has read input from the socket that nobody has parsed yet.

    Looks into imaplib's buffered reader (``client._imap.file``) without blocking:
    with the socket non-blocking, ``peek`` returns what is buffered, or what the
    socket has right now, or nothing. An imaplib without that reader is taken to
    have nothing buffered, which is how ``idle_check`` itself sees it.
    """
    peek = getattr(getattr(getattr(client, "_imap", None), "file", None), "peek", None)
    if peek is None:
        return False
    sock = client.socket()
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(peek(1))
    except OSError:  # ssl.SSLWantReadError: no complete TLS record yet
        return False
    finally:
        sock.settimeout(timeout)


def _is_bye(response: tuple[Any, ...]) -> bool:
    return bool(response) and response[0] == b"BYE"


def _announces_mail(response: tuple[Any, ...]) -> bool:
    return len(response) >= 2 and response[1] == b"EXISTS"


def _shutdown(client: Any) -> None:
    with suppress(IMAPClientError, OSError):
        client.shutdown()
