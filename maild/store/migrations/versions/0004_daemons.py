"""Every running daemon records itself: host, pid, start, heartbeat, last read of the mailbox, stop.

``maild status`` tells one daemon from several sharing a database, a daemon
that is starting from one that cannot read its mailbox, and a clean stop from
a crash (a heartbeat that stopped without a recorded stop).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "daemons",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("heartbeat_at", TZ, nullable=False),
        sa.Column("last_poll_at", TZ, nullable=True),
        sa.Column("stopped_at", TZ, nullable=True),
    )
    op.create_index("ix_daemons_stopped_at", "daemons", ["stopped_at"])


def downgrade() -> None:
    op.drop_index("ix_daemons_stopped_at", table_name="daemons")
    op.drop_table("daemons")
