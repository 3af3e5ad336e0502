"""Alembic environment: uses the connection handed over by ``maild.store.migrations``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from maild.store.engine import make_engine
from maild.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata, literal_binds=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as fresh:
            _run(fresh)
    finally:
        engine.dispose()


_main()
