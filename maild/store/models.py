"""SQLAlchemy 2 models: the database is maild's source of truth.

Only the store (``maild.store``) uses these classes; everything outside it sees
frozen records. Three column types carry the rules every value obeys:

- ``SafeText`` strips NUL and replaces lone surrogates on the way in, because
  PostgreSQL refuses both in text (Dovecot even hands NUL back as 0x80), and
  SQLite must behave the same so a test on one proves the other.
- ``SafeJSON`` applies the same cleaning to every string inside a JSON value.
- ``UTCDateTime`` accepts only aware datetimes, stores UTC and returns aware
  UTC datetimes on both backends (SQLite has no time zone type).

The schema itself is created by the Alembic migrations in ``maild/store/migrations``;
a test checks that they and these models agree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The state enums are plain records of the store (maild.records): code that only names a state
# needs no SQLAlchemy. The columns below check their values.
from maild.records import MessageKind, OutboxState, QuarantineState, TicketState

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def clean_text(value: str) -> str:
    """Drop NUL and replace lone surrogates with U+FFFD; valid pairs are joined.

    Text decoded with ``surrogateescape`` or from broken encoded-words carries
    lone surrogates, which neither UTF-8 nor PostgreSQL accept.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value.replace("\x00", "") if "\x00" in value else value


def clean_json(value: Any) -> Any:
    """``clean_text`` applied to every string (keys too) inside a JSON value; lists for tuples.

    Events bind a list of reasons and a dict of strings for every row: when all the strings of
    one list or dict are clean already (the rule), it is copied as a whole instead of cleaning
    them one by one. Only keys of type ``str`` itself are their own ``str()``.
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        if {str}.issuperset(map(type, value)) and _all_clean((*value, *value.values())):
            return dict(value)
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return list(value) if _all_clean(value) else [clean_json(v) for v in value]
    return value


def _all_clean(values: Iterable[Any]) -> bool:
    """True when every item is a string that ``clean_text`` returns as is: no NUL, no surrogate.

    Checked on all of them joined, in C: ASCII is known without a scan, and a surrogate, even
    next to one from another string, never encodes to UTF-8.
    """
    try:
        joined = "".join(values)  # a TypeError when one is not a string
    except TypeError:
        return False
    return "\x00" not in joined and (joined.isascii() or _encodes(joined))


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    listed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=column)


class SafeText(TypeDecorator[str]):
    """Text that PostgreSQL accepts: no NUL, no lone surrogate."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else clean_text(value)


class SafeString(TypeDecorator[str]):
    """Bounded ``SafeText`` for short codes (states, kinds, keys)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else clean_text(value)


class SafeJSON(TypeDecorator[Any]):
    """JSON whose strings are cleaned like ``SafeText``."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return clean_json(value)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored as UTC (naive UTC text on SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (_check("state", TicketState),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(SafeString(32), unique=True)
    requester: Mapped[str] = mapped_column(SafeText)
    """Lower-cased From address of the first message: only it may thread by subject tag."""
    administration: Mapped[str | None] = mapped_column(SafeText)
    category: Mapped[str] = mapped_column(SafeString(32))
    decision: Mapped[str] = mapped_column(SafeString(16))
    priority: Mapped[int] = mapped_column(Integer)
    language: Mapped[str] = mapped_column(SafeString(8))
    subject: Mapped[str] = mapped_column(SafeText)
    state: Mapped[str] = mapped_column(SafeString(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    take_in_at: Mapped[datetime] = mapped_column(UTCDateTime)
    in_hours: Mapped[bool] = mapped_column(Boolean)
    taken_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    review: Mapped[str | None] = mapped_column(SafeText)
    """Why triage was unsure of the category; NULL when it was sure."""
    first_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", use_alter=True, name="fk_tickets_first_message_id_messages")
    )
    channel: Mapped[str] = mapped_column(String(8), server_default="email")
    """How the request came: email, web, phone or fax (``maild.records.Channel``)."""


Index("ix_tickets_take_in", Ticket.taken_in_at, Ticket.take_in_at)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (_check("kind", MessageKind),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(SafeString(64), unique=True)
    source_id: Mapped[str] = mapped_column(SafeText)
    message_id: Mapped[str] = mapped_column(SafeText)
    """The Message-ID header as received (may be empty)."""
    message_key: Mapped[str] = mapped_column(SafeText, index=True)
    """Normalized Message-ID for thread lookups (see ``maild.mail.keys.message_key``)."""
    from_addr: Mapped[str] = mapped_column(SafeText)
    subject: Mapped[str] = mapped_column(SafeText)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    size: Mapped[int] = mapped_column(Integer)
    body_text: Mapped[str] = mapped_column(SafeText)
    category: Mapped[str] = mapped_column(SafeString(32))
    decision: Mapped[str] = mapped_column(SafeString(16))
    language: Mapped[str] = mapped_column(SafeString(8))
    administration: Mapped[str | None] = mapped_column(SafeText)
    priority: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[list[str]] = mapped_column(SafeJSON)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(SafeString(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[str] = mapped_column(String(8), server_default="email")


class RawMessage(Base):
    """The bytes of a recorded message, as received, in a table of their own.

    Why not a column of ``messages``: SQLite builds a row's whole record to
    write it, so a blob in the middle of a row is copied on every write of that
    row, and ``zeroblob`` (how a large message is streamed in) stays virtual
    only in a row's last column. Here the blob is the last column of a row that
    is written once and never updated.
    """

    __tablename__ = "raw_messages"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Event(Base):
    """Append-only: triggers created by the migration refuse UPDATE and DELETE."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    """Row id of the message (``messages.id``), not its Message-ID header."""
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), index=True)
    kind: Mapped[str] = mapped_column(SafeString(32))
    reasons: Mapped[list[str]] = mapped_column(SafeJSON)
    data: Mapped[dict[str, str]] = mapped_column(SafeJSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Outbox(Base):
    __tablename__ = "outbox"
    __table_args__ = (_check("state", OutboxState),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    source_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    kind: Mapped[str] = mapped_column(SafeString(32))
    message_id: Mapped[str] = mapped_column(SafeText, unique=True)
    """Our Message-ID, exactly as written in ``data``; re-sends reuse it."""
    message_key: Mapped[str] = mapped_column(SafeText, index=True)
    recipients: Mapped[list[str]] = mapped_column(SafeJSON)
    rcpt_key: Mapped[str] = mapped_column(SafeText)
    """Lower-cased first recipient: the key of the per-sender reply brake."""
    envelope_from: Mapped[str] = mapped_column(SafeText)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    state: Mapped[str] = mapped_column(SafeString(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(SafeText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(SafeText)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When an operator released the reply from the per-sender brake; NULL otherwise."""


Index("ix_outbox_due", Outbox.state, Outbox.next_attempt_at)
Index("ix_outbox_brake", Outbox.rcpt_key, Outbox.kind, Outbox.claimed_at, Outbox.state)  # covers store.outbox._RECENT


class Quarantine(Base):
    __tablename__ = "quarantine"
    __table_args__ = (_check("state", QuarantineState),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(SafeText)
    dedupe_key: Mapped[str | None] = mapped_column(SafeString(64), index=True)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    size: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(SafeText)
    state: Mapped[str] = mapped_column(SafeString(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class State(Base):
    """Key/value rows: heartbeats, digest periods, anything the daemon must remember."""

    __tablename__ = "state"

    key: Mapped[str] = mapped_column(SafeString(200), primary_key=True)
    value: Mapped[str] = mapped_column(SafeText)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PinFailure(Base):
    """A wrong PIN: who tried it for which Administration, never the PIN itself."""

    __tablename__ = "pin_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    administration: Mapped[str] = mapped_column(SafeText)
    client: Mapped[str] = mapped_column(SafeText)
    """The client's address (web) or the operator's login (phone)."""
    channel: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


Index("ix_pin_failures_administration_at", PinFailure.administration, PinFailure.at)
Index("ix_pin_failures_client_at", PinFailure.client, PinFailure.at)


class DaemonRun(Base):
    """One run of ``maild run``: who it is, that it lives, whether it reads, when it stopped."""

    __tablename__ = "daemons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(SafeString(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class TicketCounter(Base):
    """Last number handed out per reference series ("HD-2027").

    The row is updated inside the intake transaction, so its lock serializes
    allocation on PostgreSQL and a rollback gives the number back: no gaps, no
    duplicates, on both backends.
    """

    __tablename__ = "ticket_counters"

    series: Mapped[str] = mapped_column(SafeString(32), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)
