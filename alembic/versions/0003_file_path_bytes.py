"""``recordings.file_path_bytes``: the exact path of a file whose name is not readable text.

A file on an SMB share often has a Latin-1 name (``Anruf M\\xfcller.m4a``): Python sees it
with surrogate escapes, which neither the database, the log nor the broker can encode.
``file_path`` and ``file_name`` now hold a readable form of such a name (decoded as UTF-8,
else cp1252, control characters escaped) and this column the exact bytes the worker opens.
NULL for every file whose name is readable as it is, so no existing row changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("file_path_bytes", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("file_path_bytes")
