"""Sent marks kept in a journal file, for a sender in a process of its own (SQLite).

Why: on SQLite one process writes at a time. A sender marking each reply sent
in its own commit takes the write lock once per reply, and a sender in its own
process then queues on SQLite's busy handler (sleeps of 1 to 100 ms) behind
every intake transaction. A sender that shares the intake's process shares its
interpreter lock instead, and each of its four SMTP round trips per reply
waits for the intake's turn. The journal removes both: a reply accepted by the
server becomes one line appended to a file of the sender's own (one ``write``,
no lock), and the lines are folded into the database a claim's worth at a
time (``Store.mark_sent_many``), at the sender's next claim and at the end of
each drain.

Same guarantee as a commit: a ``write`` returns once the line is in the
kernel; a killed process keeps it, exactly like a SQLite commit under
``synchronous=NORMAL`` (see ``maild.store.engine``). So the one-reply window
for a double send after a crash is unchanged.

Who folds what: the owner folds and empties its own journal. Whoever claims or
recovers (any sender of the same database, which SQLite keeps on one host)
first folds every other journal in the folder, so a reply whose mark is still
in a stopped or stuck sender's journal is marked sent before its lease can be
released or taken over. Journals of processes that no longer run are removed
once folded. Folding is idempotent: a reply already ``sent`` is left alone.

Used only for SQLite files: a PostgreSQL database may be shared by hosts that
cannot read each other's files, so there each reply keeps its own commit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote

from maild.errors import StoreError
from maild.store import Store

log = logging.getLogger("maild.sender")

PREFIX = "sent-"
SUFFIX = ".journal"


class SentJournal:
    """The journal of one sender (``owner``, as in its leases) in ``directory``."""

    def __init__(self, directory: Path, owner: str) -> None:
        self.directory = directory
        self.owner = owner
        self.path = directory / f"{PREFIX}{quote(owner, safe='')}{SUFFIX}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._broken = False
        except OSError as exc:
            raise StoreError(f"cannot open the sent journal {self.path}: {exc.strerror}") from exc

    def record(self, outbox_id: int) -> None:
        """The server accepted reply ``outbox_id``: one line, one ``write``.

        A line cut short (a full disk) is cut off again: a later line must not
        be glued to it into another reply's id. If it cannot be, the journal
        takes no more lines and the sender commits its marks instead.
        """
        if self._broken:
            raise StoreError(f"the sent journal {self.path} ends in a cut line; it takes no more")
        line = b"%d\n" % outbox_id
        try:
            end = os.fstat(self._fd).st_size
        except OSError as exc:
            raise StoreError(f"cannot write the sent journal {self.path}: {exc.strerror}") from exc
        try:
            written = _append(self._fd, line)
        except OSError as exc:
            self._cut_back(end)
            raise StoreError(f"cannot write the sent journal {self.path}: {exc.strerror}") from exc
        if written != len(line):
            self._cut_back(end)
            raise StoreError(f"cannot write the sent journal {self.path}: short write (disk full?)")

    def _cut_back(self, end: int) -> None:
        try:
            os.ftruncate(self._fd, end)
        except OSError:
            self._broken = True

    def fold(self, store: Store, now: datetime, is_dead: Callable[[str], bool]) -> int:
        """Fold every journal of the folder into ``store``, then empty this one; how many rows were marked."""
        marked = fold_journals(self.directory, store, now, is_dead, own=self.path)
        try:
            os.ftruncate(self._fd, 0)  # after the commit: a crash in between only folds the lines again
            self._broken = False
        except OSError as exc:
            raise StoreError(f"cannot empty the sent journal {self.path}: {exc.strerror}") from exc
        return marked

    def close(self) -> None:
        """Close the journal; remove it when empty (everything folded), keep it for recovery otherwise."""
        try:
            if os.fstat(self._fd).st_size == 0:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)


def _append(fd: int, line: bytes) -> int:
    """The journal's one write to its file (O_APPEND): how many bytes the kernel took."""
    return os.write(fd, line)


def open_journal(store: Store, owner: str) -> SentJournal | None:
    """``owner``'s journal for a SQLite file; None (a commit per reply) elsewhere or if it cannot be opened."""
    if store.journal_dir is None:
        return None
    try:
        return SentJournal(store.journal_dir, owner)
    except StoreError as exc:
        log.warning("%s; each reply is marked sent in its own commit instead", exc)
        return None


def fold_journals(directory: Path | None, store: Store, now: datetime, is_dead: Callable[[str], bool],
                  own: Path | None = None) -> int:
    """Mark every reply named in the journals of ``directory`` sent, in one transaction.

    Afterwards the journals of owners that ``is_dead`` are removed; ``own`` is
    left for its owner to empty. Returns how many rows this marked.
    """
    if directory is None:
        return 0
    journals = _journals(directory)
    ids = sorted({outbox_id for path in journals for outbox_id in _read(path)})
    marked = store.mark_sent_many(ids, now)
    for path in journals:
        owner = unquote(path.name[len(PREFIX):-len(SUFFIX)])
        if path != own and is_dead(owner):
            path.unlink(missing_ok=True)
            log.info("sent journal of stopped sender %s folded and removed", owner)
    if marked:
        log.debug("%d sent mark%s folded into the database", marked, "" if marked == 1 else "s")
    return marked


def _journals(directory: Path) -> list[Path]:
    try:
        return sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))
    except OSError as exc:
        raise StoreError(f"cannot list the sent journals in {directory}: {exc.strerror}") from exc


def _read(path: Path) -> list[int]:
    """The ids of complete lines; a line cut short (power cut mid-write) is not a mark."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []  # removed by another folder meanwhile
    except OSError as exc:
        raise StoreError(f"cannot read the sent journal {path}: {exc.strerror}") from exc
    complete = data[: data.rfind(b"\n") + 1]
    return [int(line) for line in complete.split() if line.isdigit()]
