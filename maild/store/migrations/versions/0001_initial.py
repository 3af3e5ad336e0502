"""Initial schema: messages, tickets, events, outbox, quarantine, state, counters.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)

SQLITE_TRIGGERS = (
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
)
PG_TRIGGERS = (
    "CREATE FUNCTION maild_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'events are append-only'; END $$",
    "CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events "
    "FOR EACH ROW EXECUTE FUNCTION maild_events_append_only()",
    "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
    "FOR EACH STATEMENT EXECUTE FUNCTION maild_events_append_only()",
)


def _state_check(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=column)


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("reference", sa.String(32), nullable=False),
        sa.Column("requester", sa.Text(), nullable=False),
        sa.Column("administration", sa.Text(), nullable=True),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("take_in_at", TZ, nullable=False),
        sa.Column("in_hours", sa.Boolean(), nullable=False),
        sa.Column("taken_in_at", TZ, nullable=True),
        sa.Column("resolved_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("first_message_id", sa.Integer(), nullable=True),
        sa.UniqueConstraint("reference", name="uq_tickets_reference"),
        _state_check("state", ("open", "resolved")),
    )
    op.create_index("ix_tickets_take_in", "tickets", ["taken_in_at", "take_in_at"])

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("message_key", sa.Text(), nullable=False),
        sa.Column("from_addr", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("administration", sa.Text(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id", name="fk_messages_ticket_id_tickets"),
                  nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("dedupe_key", name="uq_messages_dedupe_key"),
        _state_check("kind", ("new", "followup", "ignored", "refused")),
    )
    op.create_index("ix_messages_message_key", "messages", ["message_key"])
    op.create_index("ix_messages_ticket_id", "messages", ["ticket_id"])

    with op.batch_alter_table("tickets") as batch:
        batch.create_foreign_key("fk_tickets_first_message_id_messages", "messages", ["first_message_id"], ["id"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id", name="fk_outbox_ticket_id_tickets"),
                  nullable=True),
        sa.Column("source_message_id", sa.Integer(),
                  sa.ForeignKey("messages.id", name="fk_outbox_source_message_id_messages"), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("message_key", sa.Text(), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("rcpt_key", sa.Text(), nullable=False),
        sa.Column("envelope_from", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("claimed_at", TZ, nullable=True),
        sa.Column("sent_at", TZ, nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_until", TZ, nullable=True),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
        _state_check("state", ("pending", "sending", "sent", "held", "failed")),
    )
    op.create_index("ix_outbox_ticket_id", "outbox", ["ticket_id"])
    op.create_index("ix_outbox_message_key", "outbox", ["message_key"])
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_brake", "outbox", ["rcpt_key", "claimed_at"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id", name="fk_events_ticket_id_tickets"),
                  nullable=True),
        sa.Column("message_id", sa.Integer(),
                  sa.ForeignKey("messages.id", name="fk_events_message_id_messages"), nullable=True),
        sa.Column("outbox_id", sa.Integer(), sa.ForeignKey("outbox.id", name="fk_events_outbox_id_outbox"),
                  nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_events_ticket_id", "events", ["ticket_id"])
    op.create_index("ix_events_message_id", "events", ["message_id"])
    op.create_index("ix_events_outbox_id", "events", ["outbox_id"])
    op.create_index("ix_events_at", "events", ["at"])

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        _state_check("state", ("quarantined", "retry", "retried", "released")),
    )
    op.create_index("ix_quarantine_dedupe_key", "quarantine", ["dedupe_key"])

    op.create_table(
        "state",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "ticket_counters",
        sa.Column("series", sa.String(32), primary_key=True),
        sa.Column("last", sa.Integer(), nullable=False),
    )

    for statement in SQLITE_TRIGGERS if op.get_bind().dialect.name == "sqlite" else PG_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER events_no_truncate ON events")
        op.execute("DROP TRIGGER events_no_change ON events")
        op.execute("DROP FUNCTION maild_events_append_only()")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("fk_tickets_first_message_id_messages", type_="foreignkey")
    for table in ("ticket_counters", "state", "quarantine", "events", "outbox", "messages", "tickets"):
        op.drop_table(table)
