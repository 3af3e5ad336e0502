"""Quarantine: messages that could not be processed, kept with the error.

An entry is ``quarantined``; an operator may ask for a ``retry`` (the daemon
picks those up with ``pending_retries`` and records the intake with
``Intake.quarantine_id``, which marks the entry ``retried`` in the same
transaction) or ``release`` it (handled by hand). The same message quarantined
again (copied back to INBOX, or a failed retry) updates its open entry rather
than piling up new ones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session, defer

from maild.records import EventKind, QuarantineEntry, QuarantineState
from maild.store import models
from maild.store.common import add_event, rowcount


def record(
    session: Session, *, source_id: str, raw: bytes | None, size: int, error: str, now: datetime,
    dedupe_key: str | None, retry_of: int | None,
) -> int:
    """Store (or refresh) a quarantine entry; returns its id."""
    q = models.Quarantine
    row: models.Quarantine | None = None
    if retry_of is not None:
        row = session.get(q, retry_of)
    elif dedupe_key is not None:
        row = session.scalars(select(q).where(
            q.dedupe_key == dedupe_key, q.state.in_([QuarantineState.QUARANTINED.value, QuarantineState.RETRY.value])
        ).order_by(q.id).limit(1)).first()
    if row is None:
        row = q(source_id=source_id, dedupe_key=dedupe_key, raw=raw, size=size, error=error,
                state=QuarantineState.QUARANTINED.value, at=now, updated_at=now)
        session.add(row)
    else:
        row.source_id, row.error, row.updated_at = source_id, error, now
        row.state = QuarantineState.QUARANTINED.value
    session.flush()
    add_event(session, EventKind.QUARANTINED, now, reasons=(error,),
              data={"quarantine_id": row.id, "source_id": source_id, "size": size})
    return row.id


def _entry(row: models.Quarantine, *, with_raw: bool) -> QuarantineEntry:
    return QuarantineEntry(
        id=row.id, source_id=row.source_id, dedupe_key=row.dedupe_key, size=row.size, error=row.error,
        state=QuarantineState(row.state), at=row.at, updated_at=row.updated_at,
        raw=row.raw if with_raw else None,
    )


def _listing(state: QuarantineState | None) -> Select[models.Quarantine]:
    q = models.Quarantine
    query = select(q).options(defer(q.raw)).order_by(q.id)
    return query if state is None else query.where(q.state == state.value)


def entries(session: Session, state: QuarantineState | None, limit: int) -> tuple[QuarantineEntry, ...]:
    return tuple(_entry(r, with_raw=False) for r in session.scalars(_listing(state).limit(limit)))


def get(session: Session, quarantine_id: int) -> QuarantineEntry | None:
    row = session.get(models.Quarantine, quarantine_id)
    return None if row is None else _entry(row, with_raw=True)


def pending_retries(session: Session, limit: int) -> tuple[QuarantineEntry, ...]:
    rows = session.scalars(select(models.Quarantine).where(
        models.Quarantine.state == QuarantineState.RETRY.value).order_by(models.Quarantine.id).limit(limit))
    return tuple(_entry(r, with_raw=True) for r in rows)


def transition(
    session: Session, quarantine_id: int, now: datetime, *, to: QuarantineState,
    allowed_from: tuple[QuarantineState, ...], kind: EventKind, by: str,
) -> bool:
    q = models.Quarantine
    done = rowcount(session.execute(
        update(q).where(q.id == quarantine_id, q.state.in_([s.value for s in allowed_from]))
        .values(state=to.value, updated_at=now).execution_options(synchronize_session=False)
    ))
    if done:
        add_event(session, kind, now, data={"quarantine_id": quarantine_id, "by": by})
    return bool(done)
