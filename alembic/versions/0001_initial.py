"""Recordings, their attempts (task runs), transcript segments, service runs.

The ``updated_at`` trigger makes an operator's raw SQL UPDATE move ``updated_at``
too (Postgres and SQLite alike).

Revision ID: 0001
Revises:
Create Date: 2026-11-29 02:53:27.245984
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import transcriber.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("file_path", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column(
            "created_at", transcriber.tables.UTCDateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", transcriber.tables.UTCDateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("started_at", transcriber.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", transcriber.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", transcriber.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("not_before", transcriber.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("current_attempt_id", sa.Integer(), nullable=True),
        sa.Column("progress_seconds", sa.Float(), nullable=True),
        sa.Column("work_seconds_per_audio_second", sa.Float(), nullable=True),
        sa.Column("channels", sa.Integer(), nullable=True),
        sa.Column("language_probability", sa.Float(), nullable=True),
        sa.Column("speech_seconds", sa.Float(), nullable=True),
        sa.Column("avg_logprob", sa.Float(), nullable=True),
        sa.Column("no_speech_prob", sa.Float(), nullable=True),
        sa.Column("words_per_minute", sa.Float(), nullable=True),
        sa.Column("needs_review", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("review_reasons", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'completed', 'failed', 'skipped')", name=op.f("ck_recordings_status")
        ),
        sa.CheckConstraint("retry_count >= 0", name=op.f("ck_recordings_retry_count")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("content_sha256", name=op.f("uq_recordings_content_sha256")),
    )
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recordings_status"), ["status"], unique=False)
        batch_op.create_index("ix_recordings_status_not_before", ["status", "not_before"], unique=False)

    _create_updated_at_trigger()

    op.create_table(
        "service_runs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last_run_at", transcriber.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_runs")),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recording_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("started_at", transcriber.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", transcriber.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("time_limit_seconds", sa.Float(), nullable=True),
        sa.Column("audio_start_seconds", sa.Float(), nullable=True),
        sa.Column("audio_end_seconds", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('running', 'succeeded', 'timeout', 'failed', 'lost')", name=op.f("ck_attempts_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"], name=op.f("fk_attempts_recording_id_recordings"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("recording_id", "attempt", name="uq_attempts_recording_attempt"),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attempts_recording_id"), ["recording_id"], unique=False)

    op.create_table(
        "segments",
        sa.Column("recording_id", sa.Uuid(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("speaker", sa.String(length=64), nullable=True),
        sa.Column("avg_logprob", sa.Float(), nullable=True),
        sa.Column("no_speech_prob", sa.Float(), nullable=True),
        sa.Column("words", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"], name=op.f("fk_segments_recording_id_recordings"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("recording_id", "idx", name=op.f("pk_segments")),
    )


_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION recordings_touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""

_PG_TRIGGER = """
CREATE TRIGGER recordings_touch_updated_at BEFORE UPDATE ON recordings
FOR EACH ROW EXECUTE FUNCTION recordings_touch_updated_at()
"""

# SQLite cannot assign NEW; an AFTER trigger writes the time when the UPDATE left it alone.
_SQLITE_TRIGGER = """
CREATE TRIGGER recordings_touch_updated_at AFTER UPDATE ON recordings
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE recordings SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id;
END
"""


def _create_updated_at_trigger() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    elif dialect == "sqlite":
        op.execute(_SQLITE_TRIGGER)


def _drop_updated_at_trigger() -> None:
    dialect = op.get_bind().dialect.name
    op.execute(
        "DROP TRIGGER IF EXISTS recordings_touch_updated_at" + (" ON recordings" if dialect == "postgresql" else "")
    )
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS recordings_touch_updated_at()")


def downgrade() -> None:
    op.drop_table("segments")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempts_recording_id"))

    op.drop_table("attempts")
    op.drop_table("service_runs")
    _drop_updated_at_trigger()
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_index("ix_recordings_status_not_before")
        batch_op.drop_index(batch_op.f("ix_recordings_status"))

    op.drop_table("recordings")
