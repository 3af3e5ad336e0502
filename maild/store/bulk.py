"""Many-row INSERTs for the intake transaction: one driver call per table and batch.

Why not ``conn.execute(insert(table), rows)``: to return new ids in order,
SQLAlchemy sends SQLite one INSERT per row, and for every row of every table
it builds the parameters again through its compiled-statement machinery:
a large share of the intake transaction's time. Here a table's rows go to the driver
in one ``executemany``, after each value went through the very bind processor
SQLAlchemy would have applied (the column type's, for this dialect), so the
stored values are the same; a test writes a batch both ways and compares.

New ids on SQLite: every maild transaction there starts with ``BEGIN
IMMEDIATE``, so no other writer can insert until it commits, and a table
without AUTOINCREMENT gives a new row the largest id plus one. The ids are
therefore handed out here, from ``max(id)``, exactly as SQLite would have.
PostgreSQL, where ids come from sequences and other writers run alongside,
keeps SQLAlchemy's INSERT ... RETURNING.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Table, func, insert, select

from maild.store import models

_Processor = Callable[[Any], Any] | None
_NOTHING = object()


def table_of(model: type[models.Base]) -> Table:
    """The ``Table`` of a mapped class (typed as a plain ``FromClause`` by SQLAlchemy)."""
    return cast(Table, model.__table__)


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows`` (all with the same keys) into ``table``."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), list(rows))
        return
    columns = tuple(rows[0])
    _executemany(conn, table, columns, [_values(row, columns) for row in rows])


def insert_returning_ids(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """INSERT ``rows`` into ``table`` and return their new ids, in the order of ``rows``."""
    if not rows:
        return []
    key = table.primary_key.columns.values()[0]
    if conn.dialect.name != "sqlite":
        statement = insert(table).returning(key, sort_by_parameter_order=True)
        return list(conn.execute(statement, list(rows)).scalars())
    last: int = conn.execute(select(func.coalesce(func.max(key), 0))).scalar_one()
    ids = list(range(last + 1, last + 1 + len(rows)))
    given = tuple(rows[0])
    _executemany(conn, table, (key.name, *given),
                 [(new_id, *_values(row, given)) for new_id, row in zip(ids, rows, strict=True)])
    return ids


def _values(row: Mapping[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    """A row's values in ``columns`` order; a row missing a column is a fault (KeyError)."""
    if len(row) != len(columns):
        raise ValueError(f"row has columns {sorted(row)}, expected {sorted(columns)}")
    return tuple(row[name] for name in columns)


def _executemany(conn: Connection, table: Table, columns: tuple[str, ...], values: list[tuple[Any, ...]]) -> None:
    """Bind every value as SQLAlchemy would, then hand all the rows to the driver at once."""
    processors = [_bind_processor(table, name, conn.dialect) for name in columns]
    if any(processors):
        columns_of = zip(*values, strict=True)
        bound = [column if p is None else _bound(p, column) for p, column in zip(processors, columns_of, strict=True)]
        values = list(zip(*bound, strict=True))
    quote = conn.dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join('?' * len(columns))})")
    conn.exec_driver_sql(sql, values)


def _bound(process: Callable[[Any], Any], column: Sequence[Any]) -> Sequence[Any]:
    """``process`` applied to every value of a column; a value that is the very object of the row
    before is bound once (the batch's ``now`` stamps every row of it)."""
    bound: list[Any] = []
    last: object = _NOTHING
    done: Any = None
    for value in column:
        if value is not last:
            last, done = value, process(value)
        bound.append(done)
    return bound


def _bind_processor(table: Table, column: str, dialect: Dialect) -> _Processor:
    processor: _Processor = table.columns[column].type.dialect_impl(dialect).bind_processor(dialect)
    return processor
