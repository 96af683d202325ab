"""The webhook outbox, and the class of every failed attempt.

- ``webhook_events``: one row per event (``recording.completed``, ``recording.failed``,
  ``recording.needs_review``), written in the transaction of the state change that causes it;
  ``webhooks.py`` delivers them (status pending -> delivered, or failed after WEBHOOK_MAX_ATTEMPTS).
- ``attempts.cause``: timeout, worker_lost, unreadable, io, ... (``errors.cause_of``), what
  ``transcriber_failures_total{cause}`` counts. Attempts closed before this revision are classified
  by ``upgrade`` from their outcome and message, with the same function.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("recording_id", sa.Uuid(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name=op.f("ck_webhook_events_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_webhook_events_event_id")),
    )
    op.create_index("ix_webhook_events_recording_id", "webhook_events", ["recording_id"])
    op.create_index("ix_webhook_events_status_next_attempt_at", "webhook_events", ["status", "next_attempt_at"])
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("cause", sa.String(32), nullable=True))
    _backfill_causes()


def _backfill_causes() -> None:
    from transcriber.errors import cause_of

    if op.get_context().as_sql:
        return
    attempts = sa.table(
        "attempts", sa.column("id", sa.Integer()), sa.column("outcome", sa.String(16)),
        sa.column("error_message", sa.Text()), sa.column("cause", sa.String(32)),
    )  # fmt: skip
    bind = op.get_bind()
    rows = bind.execute(sa.select(attempts.c.id, attempts.c.outcome, attempts.c.error_message)).all()
    found = [{"aid": i, "c": cause_of(o, e)} for i, o, e in rows if cause_of(o, e)]
    if found:
        bind.execute(attempts.update().where(attempts.c.id == sa.bindparam("aid")).values(cause=sa.bindparam("c")),
                     found)  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("cause")
    op.drop_index("ix_webhook_events_status_next_attempt_at", table_name="webhook_events")
    op.drop_index("ix_webhook_events_recording_id", table_name="webhook_events")
    op.drop_table("webhook_events")
