"""``recordings.uncovered_seconds`` and ``uncovered_spans``: speech the transcript has no text for.

Voice-activity detection finds the speech of a call; the segments with words cover their
time. What is left after the repair (``decoding``) is stored here: the seconds, and the
stretches as JSON ``[{"start": s, "end": s, "speaker": name?}, ...]``. NULL on rows
completed before this revision, which were never measured.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("uncovered_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("uncovered_spans", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("uncovered_spans")
        batch.drop_column("uncovered_seconds")
