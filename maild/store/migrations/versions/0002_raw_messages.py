"""Raw message bytes move from ``messages.raw`` to a table of their own, ``raw_messages``.

SQLite builds a row's whole record to write it: a blob in the middle of
``messages`` is copied again on every write of its row, and the ``zeroblob``
it is streamed into stays virtual only in a last column. In ``raw_messages``
the blob is the last column of a row written once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "raw_messages",
        sa.Column("message_id", sa.Integer(),
                  sa.ForeignKey("messages.id", name="fk_raw_messages_message_id_messages"), primary_key=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
    )
    op.execute("INSERT INTO raw_messages (message_id, raw) SELECT id, raw FROM messages")
    _drop_raw_column()


def _drop_raw_column() -> None:
    # SQLite (3.35+) drops a column in place; the batch mode's copy-and-rename would trip
    # over the foreign keys that point at ``messages``.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE messages DROP COLUMN raw")
    else:
        op.drop_column("messages", "raw")


def downgrade() -> None:
    op.add_column("messages", sa.Column("raw", sa.LargeBinary(), nullable=False, server_default=sa.text("''")))
    op.execute("UPDATE messages SET raw = (SELECT r.raw FROM raw_messages r WHERE r.message_id = messages.id)")
    op.drop_table("raw_messages")
