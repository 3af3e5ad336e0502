"""``Store``: the one entry point to maild's database.

Every method is one transaction, takes time as an argument (``now``) and
returns frozen records. Any SQLAlchemy or driver error leaves as
``StoreError`` (the transaction rolled back). Exceptions raised by a caller's
``render`` function propagate unchanged, after the rollback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import TracebackType

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.records import (
    DaemonRecord,
    Event,
    EventKind,
    Intake,
    IntakeResult,
    MessageCount,
    MessageFact,
    OutboxItem,
    OutboxState,
    OutboxSummary,
    OutgoingMail,
    PinFailureFact,
    QuarantineEntry,
    QuarantineState,
    QueuedIntake,
    Renderer,
    StateEntry,
    Stats,
    TakeInItem,
    TicketRef,
    TicketState,
    TicketStory,
    TicketSummary,
)
from maild.settings import Limits
from maild.store import intake as intake_ops
from maild.store import outbox as outbox_ops
from maild.store import pins as pin_ops
from maild.store import quarantine as quarantine_ops
from maild.store import reads
from maild.store import state as state_ops
from maild.store import tickets as ticket_ops
from maild.store.engine import make_engine, sqlite_file, store_error, sync, translated
from maild.store.schema import at_revision

log = logging.getLogger("maild.store")


class Store:
    """maild's database, from a ``sqlite:///`` or ``postgresql+psycopg://`` URL.

    ``ticket_prefix`` and ``timezone`` shape references: ``HD-2027-000123`` takes
    its year from the message's arrival in ``timezone`` (the help desk's).
    Construct with ``Store.open`` to migrate first (what the daemon does).
    """

    def __init__(self, url: str, *, ticket_prefix: str = "HD", timezone: tzinfo = UTC) -> None:
        self._engine = make_engine(url)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        # SQLite has one writer at a time, and its busy handler waits for the lock in sleeps of
        # 1 to 100 ms: the intake and sender threads of one process take turns on a lock instead,
        # woken the moment it is free. Other processes still queue on the busy timeout.
        self._turn: AbstractContextManager[object] = (
            threading.RLock() if self._engine.dialect.name == "sqlite" else nullcontext())
        self._prefix = ticket_prefix
        self._zone = timezone

    @classmethod
    def open(cls, url: str, *, ticket_prefix: str = "HD", timezone: tzinfo = UTC) -> Store:
        """Connect and run the migrations up to head (idempotent)."""
        store = cls(url, ticket_prefix=ticket_prefix, timezone=timezone)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def engine(self) -> Engine:
        return self._engine

    def migrate(self) -> None:
        """Bring the schema to head; a database already there is recognised without Alembic."""
        if at_revision(self._engine):
            return
        from maild.store.migrate import upgrade_engine  # noqa: PLC0415 - Alembic only when needed

        upgrade_engine(self._engine)

    def revision(self) -> str | None:
        """The migration revision the database is at (None: never migrated)."""
        from maild.store.migrate import current_revision  # noqa: PLC0415 - Alembic only when needed

        return current_revision(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def drop_connections(self) -> None:
        """Close every pooled connection; the store stays usable and reconnects when next used.

        Before a fork (``maild.daemon.processes.child_context``): a child must not inherit an open connection.
        """
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def sync(self) -> None:
        """Make every transaction committed so far durable, before an effect outside the database
        depends on it (see ``maild.store.engine``: SQLite commits are not fsynced one by one)."""
        sync(self._engine)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session inside one transaction, taking this process's turn on SQLite."""
        with self._turn, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _tx(self, action: str) -> Iterator[Session]:
        with translated(action), self._session() as session:
            yield session

    # ---------------------------------------------------------------- intake

    def is_known(self, dedupe_key: str) -> bool:
        """Whether a message with this key was recorded (see ``maild.mail.keys.dedupe_key``)."""
        with self._tx("cannot look up a message") as s:
            return intake_ops.is_known(s, dedupe_key)

    def record_intake(self, intake: Intake, render: Renderer) -> IntakeResult:
        """Record message, events, ticket (or follow-up) and replies in ONE transaction.

        ``render`` is called inside the transaction, once, after the ticket is
        known (never for an ignored message). A message already recorded (now,
        or concurrently by another daemon) gives ``IntakeResult(duplicate=True)``
        and nothing is written.
        """
        try:
            with self._session() as session:
                return intake_ops.record(session, intake, render, self._prefix, self._zone)
        except IntegrityError as exc:
            if not self.is_known(intake.dedupe_key):
                raise store_error(f"cannot record message {intake.source_id}", exc) from exc
            log.info("message %s already recorded by another process", intake.source_id)
            if intake.quarantine_id is not None:
                with self._tx("cannot close the quarantine entry") as s:
                    intake_ops.mark_retried(s, intake.quarantine_id, intake.now, duplicate=True)
            return IntakeResult(duplicate=True)
        except SQLAlchemyError as exc:
            raise store_error(f"cannot record message {intake.source_id}", exc) from exc

    def record_intakes(self, items: Sequence[QueuedIntake]) -> list[IntakeResult]:
        """Record a batch in ONE transaction: for each item what ``record_intake`` would do, in order.

        Any fault rolls the whole batch back and raises (``StoreError``, or what
        a ``render`` raised); the caller then records the items one by one, so
        one bad message cannot keep the others out.
        """
        try:
            with self._session() as session:
                return intake_ops.record_batch(session, items, self._prefix, self._zone)
        except SQLAlchemyError as exc:
            raise store_error(f"cannot record a batch of {len(items)} messages", exc) from exc

    def ticket_of_key(self, dedupe_key: str) -> TicketSummary | None:
        """The ticket of the message recorded with ``dedupe_key``: a request submitted twice finds its first."""
        with self._tx("cannot look up a request") as s:
            return pin_ops.ticket_of_key(s, dedupe_key)

    # ------------------------------------------------------------------ PINs

    def record_pin_failure(self, fact: PinFailureFact, notice: OutgoingMail | None) -> None:
        """A wrong PIN, its security event and the referente's notice, in one transaction."""
        with self._tx("cannot record a failed PIN") as s:
            pin_ops.record_failure(s, fact, notice)

    def pin_failures(self, since: datetime, *, administration: str | None = None,
                     client: str | None = None) -> tuple[PinFailureFact, ...]:
        """Wrong PINs since ``since``, oldest first, for one Administration and/or client."""
        with self._tx("cannot read failed PINs") as s:
            return pin_ops.failures_since(s, since, administration=administration, client=client)

    def find_thread(self, message_ids: Iterable[str], tag_refs: Iterable[str], from_addr: str) -> TicketRef | None:
        """The ticket a message continues (see ``tickets.find_thread`` for the rules)."""
        with self._tx("cannot look up a thread") as s:
            return ticket_ops.find_thread(s, message_ids, tag_refs, from_addr)

    # ------------------------------------------------------------ quarantine

    def record_quarantine(
        self, source_id: str, raw: bytes | None, size: int, error: str, now: datetime, *,
        dedupe_key: str | None = None, retry_of: int | None = None,
    ) -> int:
        """Keep a message that could not be processed; returns the entry id.

        With ``dedupe_key``, an open entry for the same message is refreshed
        instead of adding one; ``retry_of`` puts a failed retry back.
        """
        with self._tx("cannot quarantine a message") as s:
            return quarantine_ops.record(s, source_id=source_id, raw=raw, size=size, error=error, now=now,
                                         dedupe_key=dedupe_key, retry_of=retry_of)

    def quarantine_list(self, state: QuarantineState | None = None, limit: int = 1000
                        ) -> tuple[QuarantineEntry, ...]:
        """Entries oldest first, without ``raw``."""
        with self._tx("cannot list the quarantine") as s:
            return quarantine_ops.entries(s, state, limit)

    def get_quarantine(self, quarantine_id: int) -> QuarantineEntry | None:
        """One entry with ``raw``."""
        with self._tx("cannot read the quarantine") as s:
            return quarantine_ops.get(s, quarantine_id)

    def request_retry(self, quarantine_id: int, now: datetime, *, by: str = "") -> bool:
        """``maild quarantine retry ID``: queue the entry for the daemon; False if not quarantined."""
        with self._tx("cannot request a retry") as s:
            return quarantine_ops.transition(
                s, quarantine_id, now, to=QuarantineState.RETRY, allowed_from=(QuarantineState.QUARANTINED,),
                kind=EventKind.RETRY_REQUESTED, by=by)

    def pending_retries(self, limit: int = 100) -> tuple[QuarantineEntry, ...]:
        """Entries waiting for a retry, with ``raw``; record them with ``Intake.quarantine_id``."""
        with self._tx("cannot read the quarantine") as s:
            return quarantine_ops.pending_retries(s, limit)

    def mark_retried(self, quarantine_id: int, now: datetime) -> bool:
        """Close an entry whose message was handled by other means than ``record_intake``."""
        with self._tx("cannot update the quarantine") as s:
            return intake_ops.mark_retried(s, quarantine_id, now, duplicate=False)

    def release_quarantine(self, quarantine_id: int, now: datetime, *, by: str = "") -> bool:
        """Mark an entry handled by hand; False if it is not open."""
        with self._tx("cannot release a quarantine entry") as s:
            return quarantine_ops.transition(
                s, quarantine_id, now, to=QuarantineState.RELEASED,
                allowed_from=(QuarantineState.QUARANTINED, QuarantineState.RETRY),
                kind=EventKind.RELEASED, by=by)

    # ---------------------------------------------------------------- outbox

    @contextmanager
    def _connection(self, action: str) -> Iterator[Connection]:
        """One transaction on a plain connection, taking this process's turn on SQLite.

        The outbox bookkeeping runs once or twice per reply; without an ORM
        session it costs a fraction of ``_tx``.
        """
        with translated(action), self._turn, self._engine.begin() as conn:
            yield conn

    def claim_outbox(self, now: datetime, limit: int, lease_owner: str, lease_seconds: float,
                     limits: Limits) -> list[OutboxItem]:
        """Lease due replies to ``lease_owner``; replies over the per-sender brake become ``held``.

        The claim, and every commit before it, is durable when this returns: the
        caller's next step is SMTP, and a reply must never leave for a message
        whose record a power cut could still undo.
        """
        with self._connection("cannot claim replies") as conn:
            items = outbox_ops.claim(conn, now=now, limit=limit, owner=lease_owner,
                                     lease=timedelta(seconds=lease_seconds), limits=limits)
        if items:
            self.sync()
        return items

    def lease_owners(self) -> list[str]:
        """Owners of replies in ``sending`` state (see ``release_leases``)."""
        with self._connection("cannot read outbox leases") as conn:
            return outbox_ops.lease_owners(conn)

    def release_leases(self, owners: Sequence[str], now: datetime) -> int:
        """Hand the replies of dead senders (or the unsent rest of a slow one's batch) back, due now."""
        with self._connection("cannot release outbox leases") as conn:
            return outbox_ops.release_leases(conn, owners, now)

    def mark_sent(self, outbox_id: int, now: datetime) -> bool:
        with self._connection("cannot mark a reply sent") as conn:
            return outbox_ops.mark_sent(conn, outbox_id, now)

    def mark_sent_many(self, outbox_ids: Sequence[int], now: datetime) -> int:
        """Mark many replies sent in one transaction (idempotent); how many were not marked yet."""
        if not outbox_ids:
            return 0
        with self._connection("cannot mark replies sent") as conn:
            return outbox_ops.mark_sent_many(conn, outbox_ids, now)

    @property
    def journal_dir(self) -> Path | None:
        """Where senders of an embedded (SQLite file) database keep their sent journals; None otherwise.

        The folder sits beside the database file, like SQLite's own ``-wal``: every
        process that can open the database can read the journals of the others.
        """
        database = sqlite_file(self._engine)
        return None if database is None else Path(f"{database}-sent")

    def mark_retry(self, outbox_id: int, lease_owner: str, now: datetime, error: str,
                   next_attempt_at: datetime) -> bool:
        with self._connection("cannot reschedule a reply") as conn:
            return outbox_ops.mark_retry(conn, outbox_id, owner=lease_owner, now=now, error=error,
                                         next_attempt_at=next_attempt_at)

    def mark_failed(self, outbox_id: int, lease_owner: str, now: datetime, error: str, *,
                    given_up: bool = False) -> bool:
        with self._connection("cannot mark a reply failed") as conn:
            return outbox_ops.mark_failed(conn, outbox_id, owner=lease_owner, now=now, error=error,
                                          given_up=given_up)

    def release_untried(self, outbox_ids: Sequence[int], lease_owner: str, next_attempt_at: datetime) -> int:
        """Hand back leased replies that were never tried (the rest of an interrupted claim)."""
        with self._connection("cannot hand replies back") as conn:
            return outbox_ops.release_untried(conn, outbox_ids, owner=lease_owner, next_attempt_at=next_attempt_at)

    def next_reply_due(self) -> datetime | None:
        """When the first pending reply is due, so an idle sender sleeps until then and no longer."""
        with self._connection("cannot read the outbox") as conn:
            return outbox_ops.next_due(conn)

    def outbox(self, state: OutboxState | None = None, limit: int = 1000) -> tuple[OutboxSummary, ...]:
        with self._tx("cannot list the outbox") as s:
            return reads.outbox(s, state, limit)

    def outbox_listing(self, state: OutboxState | None = None, limit: int = 1000) -> tuple[OutboxSummary, ...]:
        """Replies newest first, with their tickets' references (``maild outbox list``)."""
        with self._tx("cannot list the outbox") as s:
            return reads.outbox_listing(s, state, limit)

    def outbox_entry(self, outbox_id: int) -> OutboxSummary | None:
        with self._tx("cannot read the outbox") as s:
            return reads.outbox_entry(s, outbox_id)

    def release_held(self, outbox_id: int, now: datetime, *, by: str) -> bool:
        """``maild outbox release ID``: a held reply is sent after all, its release an event; False if not held."""
        with self._connection("cannot release a held reply") as conn:
            return outbox_ops.release_held(conn, outbox_id, now, by=by)

    # --------------------------------------------------------------- take-in

    def due_take_ins(self, now: datetime, limit: int = 100) -> list[TakeInItem]:
        """Open tickets due by ``now`` and not taken in: priority, arrival, id (read only)."""
        with self._connection("cannot read take-ins") as conn:
            return ticket_ops.due_take_ins(conn, now, limit)

    def take_in(self, now: datetime, limit: int = 100) -> list[TakeInItem]:
        """Claim and mark the due take-ins (same order); each is returned to one caller only."""
        with self._connection("cannot take tickets in") as conn:
            return ticket_ops.take_in(conn, now, limit)

    def mark_taken_in(self, ticket_id: int, now: datetime) -> bool:
        """Mark one ticket taken in; False if another process did already."""
        with self._tx("cannot take a ticket in") as s:
            return ticket_ops.mark_taken_in(s, ticket_id, now)

    def next_take_in_at(self) -> datetime | None:
        """The earliest pending take-in: what to schedule after a restart."""
        with self._tx("cannot read take-ins") as s:
            return ticket_ops.next_take_in_at(s)

    # --------------------------------------------------------------- tickets

    def resolve(self, reference: str, now: datetime, *, by: str = "", reasons: Iterable[str] = (),
                replies: Iterable[OutgoingMail] = ()) -> bool:
        """Resolve an open ticket and queue ``replies`` with it; False if not open."""
        with self._tx("cannot resolve a ticket") as s:
            return ticket_ops.change_state(s, reference, now, to=TicketState.RESOLVED, by=by,
                                           reasons=reasons, replies=replies)

    def reopen(self, reference: str, now: datetime, *, by: str = "", reasons: Iterable[str] = ()) -> bool:
        """Reopen a resolved ticket; False if not resolved."""
        with self._tx("cannot reopen a ticket") as s:
            return ticket_ops.change_state(s, reference, now, to=TicketState.OPEN, by=by, reasons=reasons,
                                           replies=())

    def queue(self, state: TicketState | None = TicketState.OPEN, limit: int = 1000
              ) -> tuple[TicketSummary, ...]:
        with self._tx("cannot list tickets") as s:
            return reads.queue(s, state, limit)

    def channel_tickets(self, since: datetime, until: datetime) -> tuple[TicketSummary, ...]:
        """Tickets opened in ``[since, until)`` by web, phone or fax, in arrival order."""
        with self._tx("cannot list tickets") as s:
            return reads.channel_tickets(s, since, until)

    def ticket(self, reference: str) -> TicketSummary | None:
        with self._tx("cannot read a ticket") as s:
            return reads.ticket(s, reference)

    def ticket_story(self, reference: str) -> TicketStory | None:
        with self._tx("cannot read a ticket") as s:
            return reads.story(s, reference)

    def recent_events(self, limit: int = 100) -> tuple[Event, ...]:
        with self._tx("cannot read events") as s:
            return reads.recent_events(s, limit)

    def events_of_kind(self, kind: EventKind, since: datetime, until: datetime) -> tuple[Event, ...]:
        with self._tx("cannot read events") as s:
            return reads.events_of_kind(s, kind.value, since, until)

    def stats(self, since: datetime, until: datetime) -> Stats:
        with self._tx("cannot compute statistics") as s:
            return reads.stats(s, since, until)

    def message_raw(self, message_id: int) -> bytes | None:
        """Raw bytes of the message with row id ``message_id`` (``MessageSummary.id``)."""
        with self._tx("cannot read a message") as s:
            return reads.message_raw(s, message_id)

    def messages_recorded(self, since: datetime, until: datetime, *, decision: str | None = None,
                          limit: int = 100_000) -> tuple[MessageFact, ...]:
        """Messages recorded in ``[since, until)`` (optionally of one decision), oldest first."""
        with self._tx("cannot list messages") as s:
            return reads.messages_recorded(s, since, until, decision, limit)

    def message_counts(self, since: datetime, until: datetime) -> tuple[MessageCount, ...]:
        """Messages recorded in ``[since, until)`` by category, decision, Administration and kind."""
        with self._tx("cannot count messages") as s:
            return reads.message_counts(s, since, until)

    def outbox_trouble(self, since: datetime, until: datetime) -> tuple[OutboxSummary, ...]:
        """Replies held by the per-sender brake or failed for good in ``[since, until)``."""
        with self._tx("cannot list the outbox") as s:
            return reads.outbox_trouble(s, since, until)

    # ----------------------------------------------------------------- state

    def set_state(self, key: str, value: str, now: datetime) -> None:
        with self._tx("cannot write state") as s:
            state_ops.put(s, key, value, now)

    def get_state(self, key: str) -> StateEntry | None:
        with self._tx("cannot read state") as s:
            return state_ops.get(s, key)

    def states(self, prefix: str = "") -> tuple[StateEntry, ...]:
        with self._tx("cannot read state") as s:
            return state_ops.with_prefix(s, prefix)

    def heartbeat(self, name: str, now: datetime, info: str = "") -> None:
        """Record that component ``name`` is alive (key ``heartbeat:NAME``)."""
        self.set_state(state_ops.HEARTBEAT_PREFIX + name, info, now)

    def heartbeats(self) -> tuple[StateEntry, ...]:
        return self.states(state_ops.HEARTBEAT_PREFIX)

    def start_daemon(self, host: str, pid: int, now: datetime) -> int:
        """Record a daemon that starts (``maild status`` lists it); returns its id."""
        with self._tx("cannot record the daemon's start") as s:
            return state_ops.start_daemon(s, host, pid, now)

    def beat_daemon(self, daemon_id: int, now: datetime, last_poll_at: datetime | None) -> None:
        """The daemon lives, and last read its mailbox at ``last_poll_at`` (None: not yet)."""
        with self._tx("cannot record the daemon's heartbeat") as s:
            state_ops.beat_daemon(s, daemon_id, now, last_poll_at)

    def stop_daemon(self, daemon_id: int, now: datetime) -> None:
        with self._tx("cannot record the daemon's stop") as s:
            state_ops.stop_daemon(s, daemon_id, now)

    def daemons(self, since: datetime) -> tuple[DaemonRecord, ...]:
        """Daemons not recorded as stopped, and those stopped since ``since``."""
        with self._tx("cannot read the daemons") as s:
            return state_ops.daemons(s, since)

    def record_digest(self, period: str, now: datetime, replies: Iterable[OutgoingMail]) -> bool:
        """Queue the digest of ``period`` (e.g. "2027-01-05") once; False if already recorded."""
        try:
            with self._session() as session:
                return state_ops.record_digest(session, period, now, replies)
        except IntegrityError as exc:
            if self.get_state(state_ops.DIGEST_PREFIX + period) is not None:
                return False
            raise store_error("cannot record the digest", exc) from exc
        except SQLAlchemyError as exc:
            raise store_error("cannot record the digest", exc) from exc
