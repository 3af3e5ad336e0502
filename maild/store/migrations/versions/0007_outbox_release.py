"""A held reply can be released by an operator, and the brake then lets it pass.

``outbox.released_at`` is NULL unless ``maild outbox release`` put a reply held
by the per-sender brake back in the queue: the claim leaves the brake out for
that row, which would otherwise hold it again at once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # no copy of the whole outbox, as batch mode would make
        op.execute("ALTER TABLE outbox DROP COLUMN released_at")
    else:
        op.drop_column("outbox", "released_at")
