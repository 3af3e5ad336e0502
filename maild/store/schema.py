"""Whether the database is at this code's schema, known without loading Alembic.

The daemon checks its schema at every start. Through Alembic that means
importing it and reading every migration script before the first message,
and costs memory in every process, for a database that is nearly always at
head already. One SELECT of ``alembic_version`` answers that case; anything else
(a new, an older or a foreign database) goes through ``maild.store.migrate``.
"""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text

from maild.store.engine import translated

SCHEMA_REVISION = "0007"
"""The head of ``maild/store/migrations``, which ``maild.store.models`` matches (a test keeps the two equal)."""


def at_revision(engine: Engine, revision: str = SCHEMA_REVISION) -> bool:
    """True when the database behind ``engine`` records exactly ``revision`` as its only head."""
    with translated("cannot read the database revision"), engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions == [revision]
