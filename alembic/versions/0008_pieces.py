"""Long calls split into pieces that any free worker transcribes (issue 15).

- ``pieces``: one row per stretch of a split call, with its own status, retries, backoff, task
  message, fence, heartbeat and progress (``lifecycle.py``); deleted when the call is merged.
- ``attempts.piece``: which piece an attempt worked on (NULL: a whole call, or its merge).
- ``recordings.split_channels``: how every piece of a split call treats the channels.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pieces",
        sa.Column("recording_id", sa.Uuid(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("start_seconds", sa.Float(), nullable=False),
        sa.Column("end_seconds", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_attempt_id", sa.Integer(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("progress_seconds", sa.Float(), nullable=True),
        sa.Column("speech", sa.Text(), nullable=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("language_probability", sa.Float(), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'processing', 'completed', 'failed')", name=op.f("ck_pieces_status")),
        sa.CheckConstraint("retry_count >= 0", name=op.f("ck_pieces_retry_count")),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"], name=op.f("fk_pieces_recording_id_recordings"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("recording_id", "idx", name=op.f("pk_pieces")),
    )
    op.create_index("ix_pieces_status_not_before", "pieces", ["status", "not_before"])
    op.add_column("attempts", sa.Column("piece", sa.Integer(), nullable=True))
    op.add_column("recordings", sa.Column("split_channels", sa.String(8), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), not a batch copy: rebuilding ``recordings`` would drop the table its
    # attempts and segments point at, and with foreign keys on SQLite deletes them with it.
    op.drop_column("recordings", "split_channels")
    op.drop_column("attempts", "piece")
    op.drop_index("ix_pieces_status_not_before", table_name="pieces")
    op.drop_table("pieces")
