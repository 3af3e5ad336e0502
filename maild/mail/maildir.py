"""Local Maildirs: a mail source for the embedded default, and a reply sink.

Layout (the one ``mailbox.Maildir`` and Dovecot use): every Maildir has
``tmp/``, ``new/`` and ``cur/``; a file appears in ``new/`` or ``cur/`` only by
an atomic rename from ``tmp/``, so a reader never sees half a message.

``MaildirSource`` reads ``new/`` and ``cur/`` of the inbox Maildir and files
messages into **Maildir++ subfolders of the inbox**: ``<inbox>/.Processed`` and
``<inbox>/.Quarantine`` (names from ``processed_folder``/``quarantine_folder``).
That is the layout Dovecot itself uses, so an inbox Maildir shared with an
IMAP server shows Processed and Quarantine as ordinary folders; and a rename
within one tree never crosses a file system. The ``source_id`` is the Maildir
unique name (the file name without the ``:2,<flags>`` suffix), which stays the
same when a mail client moves a message from ``new/`` to ``cur/``.

``MaildirSink`` is a ``MailTransport`` that delivers each reply into a Maildir
(tmp -> new), named from the Message-ID so that sending the same reply twice
(a retry after a crash) replaces the file instead of duplicating it, in new/
or, when a reader already moved it, in cur/. Only a retry looks in cur/: the
outbox knows a reply on its first attempt (``OutgoingMail.first_attempt``)
has no copy anywhere, so the common send lists no folder. That knowledge lives
in the database: a sent Maildir reused with a fresh database may get a second
copy of a reply that was already read. The envelope is kept the way a delivery
agent keeps it: ``Return-Path`` (``<>`` for automatic replies) and one
``Delivered-To`` per recipient, prepended.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from maild.errors import SourceError, SourceUnavailable, TransportUnavailable
from maild.records import OutgoingMail
from maild.settings import Mailbox
from maild.sources import Incoming

log = logging.getLogger("maild.maildir")

POLL_INTERVAL = 0.2
"""Seconds between two looks at new/ and cur/ in ``wait()``: cheap, and well under a second."""
_SUBDIRS = ("tmp", "new", "cur")
_UNSAFE = re.compile(r"[^A-Za-z0-9._@=+-]+")


def make_maildir(path: Path, *, subfolder: bool = False) -> None:
    """Create the Maildir layout at ``path`` (and the Maildir++ marker for subfolders)."""
    for sub in _SUBDIRS:
        (path / sub).mkdir(parents=True, exist_ok=True)
    if subfolder:
        (path / "maildirfolder").touch(exist_ok=True)


def _key(name: str) -> str:
    """Maildir unique name: the file name without the ``:2,<flags>`` info."""
    return name.partition(":")[0]


class MaildirSource:
    """``MailSource`` over a local Maildir (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        processed_dir: Path,
        quarantine_dir: Path,
        *,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.path = Path(path)
        self.processed_dir = Path(processed_dir)
        self.quarantine_dir = Path(quarantine_dir)
        self._sleep = sleep
        self._clock = clock
        self._interval = interval
        self._known: set[str] = set()
        self._paths: dict[str, Path] = {}
        try:
            make_maildir(self.path)
            make_maildir(self.processed_dir, subfolder=True)
            make_maildir(self.quarantine_dir, subfolder=True)
        except OSError as exc:
            raise SourceError(f"Maildir {self.path}: cannot create: {exc}") from exc

    @classmethod
    def from_settings(cls, box: Mailbox) -> MaildirSource:
        return cls(box.path, box.path / f".{box.processed_folder}", box.path / f".{box.quarantine_folder}")

    # ------------------------------------------------------------ MailSource

    def fetch(self, max_bytes: int) -> Iterator[Incoming]:
        entries = self._list()
        self._known = {_key(p.name) for p in entries}
        for path in entries:
            item = self._read(path, max_bytes)
            if item is not None:
                self._paths[item.source_id] = path
                yield item

    def mark_processed(self, *items: Incoming) -> None:
        for item in items:
            self._move(item, self.processed_dir)

    def quarantine(self, *items: Incoming) -> None:
        for item in items:
            self._move(item, self.quarantine_dir)

    def wait(self, timeout: float) -> bool:
        deadline = self._clock() + timeout
        while True:
            if any(_key(p.name) not in self._known for p in self._list(sort=False)):
                return True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._sleep(min(self._interval, remaining))

    def close(self) -> None:
        self._paths.clear()

    # ------------------------------------------------------------ helpers

    def _list(self, *, sort: bool = True) -> list[Path]:
        """Message files in new/ and cur/, oldest first; dot files are not messages."""
        found: list[tuple[int, str, Path]] = []
        for sub in ("new", "cur"):
            try:
                with os.scandir(self.path / sub) as it:
                    for entry in it:
                        if not entry.name.startswith("."):
                            found.extend(_stamped(entry, sort))
            except FileNotFoundError as exc:
                raise SourceError(f"Maildir {self.path}: {sub}/ is missing") from exc
            except OSError as exc:
                raise _source_fault(self.path, exc) from exc
        if sort:
            found.sort()
        return [path for _, _, path in found]

    def _read(self, path: Path, max_bytes: int) -> Incoming | None:
        try:
            stat = path.stat()
            raw = path.read_bytes() if stat.st_size <= max_bytes else None
        except FileNotFoundError:
            return None  # moved away meanwhile (another reader, or a client's new -> cur)
        except OSError as exc:
            raise _source_fault(path, exc) from exc
        return Incoming(_key(path.name), stat.st_size, raw, "", delivered_at(path.name, stat.st_mtime))

    def _locate(self, key: str) -> Path | None:
        known = self._paths.get(key)
        if known is not None and known.exists():
            return known
        for path in self._list(sort=False):
            if _key(path.name) == key:
                return path
        return None

    def _move(self, item: Incoming, folder: Path) -> None:
        """Rename into ``folder/cur`` marked seen; a message already gone is a no-op."""
        key = item.source_id
        if not key or "/" in key or key.startswith("."):
            raise SourceError(f"Maildir {self.path}: {key!r} is not a Maildir unique name")
        source = self._locate(key)
        if source is None:
            log.info("Maildir %s: %s already moved", self.path, key)
            return
        flags = source.name.partition(":2,")[2]
        target = folder / "cur" / f"{key}:2,{''.join(sorted(set(flags) | {'S'}))}"
        try:
            source.rename(target)
        except FileNotFoundError:
            log.info("Maildir %s: %s moved away meanwhile", self.path, key)
        except OSError as exc:
            raise _source_fault(source, exc) from exc
        self._paths.pop(key, None)


def _stamped(entry: os.DirEntry[str], with_mtime: bool) -> list[tuple[int, str, Path]]:
    """(mtime, name, path) for a regular file; nothing when it vanished since the listing."""
    try:
        if not entry.is_file():
            return []
        mtime = entry.stat().st_mtime_ns if with_mtime else 0
    except FileNotFoundError:
        return []
    return [(mtime, entry.name, Path(entry.path))]


def delivered_at(name: str, mtime: float) -> datetime:
    """When a Maildir message was delivered: the later of the time in its unique name and its file's mtime.

    The later one, so that a file moved in with an old name or an old mtime is not dated back.
    """
    head = name.partition(".")[0]
    named = int(head) if head.isdigit() and len(head) <= 12 else 0
    return datetime.fromtimestamp(max(float(named), mtime), UTC)


def _source_fault(path: Path, exc: OSError) -> SourceError:
    """Permission problems will not fix themselves; anything else may (NFS, a full disk)."""
    kind = SourceError if isinstance(exc, PermissionError) else SourceUnavailable
    return kind(f"Maildir {path}: {exc.strerror or exc}")


class MaildirSink:
    """``MailTransport`` that delivers replies into a Maildir, idempotently by Message-ID."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync
        try:
            make_maildir(self.path)
        except OSError as exc:
            raise TransportUnavailable(f"Maildir {self.path}: cannot create: {exc}") from exc

    def send(self, mail: OutgoingMail, meanwhile: Callable[[], None] | None = None) -> None:
        if meanwhile is not None:
            meanwhile()  # no server to wait for: the caller's work simply comes first
        name = file_name(mail)
        tmp = self.path / "tmp" / f"{name}.{os.getpid()}.{uuid.uuid4().hex}"
        try:
            self._write(tmp, envelope_headers(mail) + mail.data)
            tmp.replace(self._target(name, mail.first_attempt))
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TransportUnavailable(f"Maildir {self.path}: cannot write {name}: {exc}") from exc
        log.debug("Maildir %s: wrote %s (%s)", self.path, name, mail.kind)

    def close(self) -> None:
        """Nothing to release: every send() opens and closes its own file."""

    def _write(self, path: Path, data: bytes) -> None:
        with path.open("xb") as fh:
            fh.write(data)
            fh.flush()
            if self._fsync:
                os.fsync(fh.fileno())

    def _target(self, name: str, first_attempt: bool) -> Path:
        """new/<name>, or the copy a reader already moved to cur/, so a retry never duplicates.

        Finding that copy means listing cur/, which grows with every reply read. A first attempt cannot
        have an earlier copy (the outbox says so), so it goes straight to new/ in O(1);
        only a later attempt, rare, pays for the listing.
        """
        if not first_attempt:
            prefix = f"{name}:2,"
            try:
                with os.scandir(self.path / "cur") as entries:
                    for entry in entries:
                        if entry.name.startswith(prefix):
                            return Path(entry.path)
            except FileNotFoundError:
                pass  # no cur/, so no copy in it
        return self.path / "new" / name


def file_name(mail: OutgoingMail) -> str:
    """Readable, safe and unique per Message-ID (the digest tells apart ids the cleanup merged)."""
    ident = mail.message_id or hashlib.sha256(mail.data).hexdigest()
    safe = _UNSAFE.sub("_", ident.strip().strip("<>")).lstrip(".")[:100] or "reply"
    digest = hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{safe}.{digest}"


def envelope_headers(mail: OutgoingMail) -> bytes:
    """Return-Path and Delivered-To lines, in the message's own line ending."""
    first_line = mail.data.split(b"\n", 1)[0]
    eol = b"\r\n" if first_line.endswith(b"\r") else b"\n"
    lines = [f"Return-Path: <{mail.envelope_from}>".encode()]
    lines += [f"Delivered-To: {rcpt}".encode() for rcpt in mail.recipients]
    return b"".join(line + eol for line in lines)
