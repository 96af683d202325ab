"""Speaker turns and figures of mono calls, and the call's facts from its file name.

- ``speaker_turns``: JSON ``[[start, end, speaker_index], ...]``, found once per recording by
  diarization and reused by every later attempt (labels stay the same across resume points).
- ``speaker_error``: why a call that should have been diarized was not (its transcript is kept).
- ``speaker_stats``: talk time and share per speaker, turns, longest monologue, overlap, silence.
- ``phone_number``, ``call_started_at``, ``contact``, ``direction``: parsed from the file name at
  intake (``Call recording +18134353769_200301_171119.m4a``); NULL where the name does not say.
  Rows registered before this revision are filled in by ``upgrade`` from their names.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("speaker_turns", sa.Text(), nullable=True))
        batch.add_column(sa.Column("speaker_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("speaker_stats", sa.Text(), nullable=True))
        batch.add_column(sa.Column("phone_number", sa.String(64), nullable=True))
        batch.add_column(sa.Column("call_started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("contact", sa.Text(), nullable=True))
        batch.add_column(sa.Column("direction", sa.String(16), nullable=True))
        batch.create_index("ix_recordings_phone_number", ["phone_number"])
        batch.create_index("ix_recordings_call_started_at", ["call_started_at"])
    _backfill_call_facts()


def _backfill_call_facts() -> None:
    """The facts of rows registered before this revision, from their names with the built-in patterns.

    FILENAME_PATTERN and friends are not read here (a migration does not load settings): those rows get what
    the built-in patterns say, in UTC; a name that says nothing stays NULL.
    """
    from transcriber.callfacts import CallFacts, parse
    from transcriber.tables import UTCDateTime

    if op.get_context().as_sql:  # offline (--sql): no rows to read; the script leaves them NULL
        return
    recordings = sa.table(
        "recordings", sa.column("id", sa.Uuid()), sa.column("file_name", sa.Text()),
        sa.column("phone_number", sa.String(64)), sa.column("call_started_at", UTCDateTime()),
        sa.column("contact", sa.Text()), sa.column("direction", sa.String(16)),
    )  # fmt: skip
    bind = op.get_bind()
    found = []
    for recording_id, file_name in bind.execute(sa.select(recordings.c.id, recordings.c.file_name)):
        facts = parse(file_name or "")
        if facts != CallFacts():
            found.append({"rid": recording_id, "p": facts.phone_number, "t": facts.call_started_at,
                          "c": facts.contact, "d": facts.direction})  # fmt: skip
    if found:
        bind.execute(
            recordings.update().where(recordings.c.id == sa.bindparam("rid")).values(
                phone_number=sa.bindparam("p"), call_started_at=sa.bindparam("t"), contact=sa.bindparam("c"),
                direction=sa.bindparam("d"),
            ),
            found,
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_index("ix_recordings_call_started_at")
        batch.drop_index("ix_recordings_phone_number")
        for column in ("direction", "contact", "call_started_at", "phone_number", "speaker_stats", "speaker_error",
                       "speaker_turns"):  # fmt: skip
            batch.drop_column(column)
