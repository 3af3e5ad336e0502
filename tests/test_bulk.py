"""The intake's many-row INSERTs on SQLite store exactly what SQLAlchemy's INSERT stores.

Each test writes the same rows into two fresh databases, once through
``maild.store.bulk`` and once through ``conn.execute(insert(table), rows)``,
and compares the stored values byte for byte, through the driver, not the
ORM: the values that need a bind processor (cleaned text and JSON, UTC
datetimes, blobs, booleans) are all there. On PostgreSQL the functions are
SQLAlchemy's own INSERT, which the store tests run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Table, insert

from maild.store import models
from maild.store.bulk import insert_returning_ids, insert_rows, table_of
from maild.store.engine import make_engine
from maild.store.migrate import upgrade

ROME_SUMMER = timezone(timedelta(hours=2))
AT = datetime(2027, 7, 1, 9, 30, 15, 123456, tzinfo=ROME_SUMMER)

Writer = Callable[[Connection, Table, Sequence[dict[str, Any]]], list[int] | None]


def event(index: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ticket_id": None, "message_id": None, "outbox_id": None, "kind": "received",
        "reasons": [f"rule {index}", "accentate: è, €"], "data": {"from": f"user{index}@example.it"}, "at": AT,
    }
    row.update(changes)
    return row


HOSTILE_EVENTS = [
    event(1),
    event(2, kind="nul\x00in a code", reasons=["lone \ud800 surrogate", "nul \x00 inside"],
          data={"key \udfff": "value \x00", "emoji": "\U0001f600"}),
    event(3, at=datetime(2027, 1, 1, 0, 0, tzinfo=UTC), reasons=[], data={}),
    event(4, at=datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5)))),
]


def outbox(index: int) -> dict[str, Any]:
    return {
        "ticket_id": None, "source_message_id": None, "kind": "ack", "message_id": f"<r{index}@example.it>",
        "message_key": f"r{index}@example.it", "recipients": [f"u{index}@example.it", "dup\x00@example.it"],
        "rcpt_key": f"u{index}@example.it", "envelope_from": "", "data": b"Subject: x\r\n\r\n\x00\xff body",
        "state": "pending", "attempts": 0, "next_attempt_at": AT, "created_at": AT,
    }


def ticket(index: int) -> dict[str, Any]:
    return {
        "reference": f"HD-2027-{index:06d}", "requester": "mario.rossi@ateneo.example.it", "administration": None,
        "category": "lifecycle", "decision": "accepted", "priority": 2, "language": "it",
        "subject": "Oggetto \ud83d senza coppia", "state": "open", "received_at": AT, "take_in_at": AT + timedelta(1),
        "in_hours": index % 2 == 0, "taken_in_at": None, "resolved_at": None, "created_at": AT,
        "first_message_id": None,
    }


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    pair = []
    for name in ("bulk", "sqlalchemy"):
        url = f"sqlite:///{tmp_path}/{name}.db"
        upgrade(url)
        pair.append(make_engine(url))
    yield pair[0], pair[1]
    for engine in pair:
        engine.dispose()


def sqlalchemy_insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    key = table.primary_key.columns.values()[0]
    return list(conn.execute(insert(table).returning(key, sort_by_parameter_order=True), list(rows)).scalars())


def stored(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    path = engine.url.database
    assert path is not None
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def write(engine: Engine, table: Table, batches: Sequence[Sequence[dict[str, Any]]], writer: Writer) -> list[Any]:
    """Each batch in a transaction of its own, as the intake writes them."""
    results = []
    for rows in batches:
        with engine.begin() as conn:
            results.append(writer(conn, table, rows))
    return results


@pytest.mark.parametrize(("model", "rows"), [
    (models.Event, HOSTILE_EVENTS),
    (models.Outbox, [outbox(i) for i in range(3)]),
    (models.Ticket, [ticket(i) for i in range(3)]),
])
def test_many_rows_are_stored_as_sqlalchemy_stores_them(
    engines: tuple[Engine, Engine], model: type[models.Base], rows: list[dict[str, Any]],
) -> None:
    bulk, reference = engines
    table = table_of(model)
    write(bulk, table, [rows], insert_rows)
    write(reference, table, [rows], sqlalchemy_insert)
    assert stored(bulk, table.name) == stored(reference, table.name)
    assert len(stored(bulk, table.name)) == len(rows)


def test_new_ids_are_those_sqlite_gives_in_row_order(engines: tuple[Engine, Engine]) -> None:
    bulk, reference = engines
    table = table_of(models.Outbox)
    batches = [[outbox(i) for i in range(0, 4)], [outbox(i) for i in range(4, 5)], [outbox(i) for i in range(5, 9)]]
    assert write(bulk, table, batches, insert_returning_ids) == [[1, 2, 3, 4], [5], [6, 7, 8, 9]]
    assert write(reference, table, batches, sqlalchemy_insert) == [[1, 2, 3, 4], [5], [6, 7, 8, 9]]
    assert stored(bulk, "outbox") == stored(reference, "outbox")


def test_the_id_of_a_deleted_last_row_is_given_again_as_sqlite_does(engines: tuple[Engine, Engine]) -> None:
    """No AUTOINCREMENT: SQLite reuses the largest id once its row is gone, and so does the bulk path."""
    for engine, writer in zip(engines, (insert_returning_ids, sqlalchemy_insert), strict=True):
        table = table_of(models.Outbox)
        write(engine, table, [[outbox(1), outbox(2), outbox(3)]], writer)
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM outbox WHERE id = 3")
        assert write(engine, table, [[outbox(4)]], writer) == [[3]]
    assert stored(engines[0], "outbox") == stored(engines[1], "outbox")


def test_a_row_without_every_column_of_the_first_is_refused(engines: tuple[Engine, Engine]) -> None:
    bulk, _ = engines
    short = event(2)
    del short["data"]
    with pytest.raises(ValueError, match="columns"), bulk.begin() as conn:
        insert_rows(conn, table_of(models.Event), [event(1), short])
    assert stored(bulk, "events") == []


def test_no_rows_is_no_statement(engines: tuple[Engine, Engine]) -> None:
    bulk, _ = engines
    with bulk.begin() as conn:
        insert_rows(conn, table_of(models.Event), [])
        assert insert_returning_ids(conn, table_of(models.Event), []) == []
    assert stored(bulk, "events") == []
