"""Running the Alembic migrations, configured from Python (no ``alembic.ini``).

The scripts live in ``maild/store/migrations``; this module only points an
in-memory configuration at them, so ``maild db upgrade`` and the daemon's
start work from an installed package in any working directory. On PostgreSQL
the upgrade holds an advisory lock, so two daemons starting together do not
race to create the same tables; on SQLite ``BEGIN IMMEDIATE`` does the same.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from maild.errors import StoreError
from maild.store.engine import make_engine, translated

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Shared by every maild process: the key of the migration lock.
_PG_LOCK_KEY = 0x6D61696C64  # "maild"


def alembic_config(url: str | None = None) -> Config:
    """An in-memory Alembic configuration for maild's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The revision this code expects the database to be at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError("no migration found")
    return head


def upgrade_engine(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the head revision (idempotent)."""
    with translated("database migration failed"), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def upgrade(url: str) -> None:
    """``maild db upgrade``: migrate the database at ``url`` to the head revision."""
    engine = make_engine(url)
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with translated("cannot read the database revision"), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
