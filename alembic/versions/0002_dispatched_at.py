"""``recordings.dispatched_at`` and ``recordings.file_mtime_ns``.

``dispatched_at``: when the last message was handed to its sender.

Dispatch leaves a recording whose message is not in the broker alone for a few
seconds after this time: the watcher and dispatch commit the task id first and send
right after, and a resend in between would put a second message on the queue.
Not touched by the ``updated_at`` trigger, so an operator's SQL reset is sent at once.

``file_mtime_ns``: the file's modification time at registration. A restarted watcher
knows a file by path, size and this; by size alone it missed a file replaced with
other audio of the same size while it was stopped.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import transcriber.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("dispatched_at", transcriber.tables.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("file_mtime_ns", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("file_mtime_ns")
        batch.drop_column("dispatched_at")
