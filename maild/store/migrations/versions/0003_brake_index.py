"""The reply brake's index covers its query: recipient, kind, claim time and state.

Before each claim the sender counts each recipient's replies of the last day
(``maild.store.outbox._RECENT``). On ``(rcpt_key, claimed_at)`` alone every
such row is read from the table for its kind and state, and with the state
filtered SQLite's planner prefers to walk every sent reply through
``ix_outbox_due``: a claim's cost would grow with every reply ever sent. On
this index the count reads the index only (the query counts the state rather
than filtering on it).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outbox_brake", table_name="outbox")
    op.create_index("ix_outbox_brake", "outbox", ["rcpt_key", "kind", "claimed_at", "state"])


def downgrade() -> None:
    op.drop_index("ix_outbox_brake", table_name="outbox")
    op.create_index("ix_outbox_brake", "outbox", ["rcpt_key", "claimed_at"])
