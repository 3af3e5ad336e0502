"""Tickets and messages carry their channel (e-mail, web, phone, fax); failed PIN attempts get a table.

Every row recorded before is an e-mail. ``pin_failures`` is what the lockout
counts (per Administration and per client address, over the last hour) and
what the digest lists; it never holds a PIN, only who tried and when.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("tickets", "messages"):
        op.add_column(table, sa.Column("channel", sa.String(8), nullable=False, server_default="email"))
    op.create_table(
        "pin_failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("administration", sa.Text(), nullable=False),
        sa.Column("client", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pin_failures"),
    )
    op.create_index("ix_pin_failures_administration_at", "pin_failures", ["administration", "at"])
    op.create_index("ix_pin_failures_client_at", "pin_failures", ["client", "at"])


def downgrade() -> None:
    op.drop_index("ix_pin_failures_client_at", table_name="pin_failures")
    op.drop_index("ix_pin_failures_administration_at", table_name="pin_failures")
    op.drop_table("pin_failures")
    for table in ("messages", "tickets"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE {table} DROP COLUMN channel")
        else:
            op.drop_column(table, "channel")
