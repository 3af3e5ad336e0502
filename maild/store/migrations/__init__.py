"""Alembic migration scripts of maild's database (``versions/``).

Run them with ``upgrade(url)`` (what ``maild db upgrade`` and the daemon's start
call); the configuration is built in memory, no ``alembic.ini`` is read.
"""

from __future__ import annotations

from maild.store.migrate import alembic_config, current_revision, head_revision, upgrade, upgrade_engine

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade", "upgrade_engine"]
