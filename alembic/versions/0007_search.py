"""Full-text search over transcript segments (``transcriber search``, search.py).

- Postgres: ``segments.search_vector``, a STORED generated ``tsvector`` of the segment's text, and a GIN
  index on it. Stored, so a phrase's recheck reads the vector instead of parsing the text again per row;
  generated, so every writer of ``segments`` (and every row already there: adding the column rewrites the
  table) is indexed without a trigger.
- SQLite: ``segments_fts``, an FTS5 table with external content (``segments`` itself, by rowid, so the text
  is stored once), kept in step by three triggers, and rebuilt from the rows already there.

Both split text into runs of letters and digits, lowercased, diacritics kept, no stemming and no stop words,
so the same query finds the same segments: on Postgres every other character becomes a space before
``to_tsvector('simple', ...)`` (its parser would otherwise keep ``3.5``, ``follow-up`` or an e-mail address
as one token, which FTS5's ``unicode61`` splits). Needs a UTF-8 ctype on Postgres (C.UTF-8, en_US.UTF-8): a
plain C ctype takes every non-ASCII letter for punctuation.

Neither is in the SQLAlchemy models; alembic/env.py leaves them out of ``alembic check``. On SQLite a later
migration that rebuilds ``segments`` (batch mode: copy, drop, rename) drops the triggers with the old table:
it must create them again and rebuild ``segments_fts``, as ``upgrade`` does here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SQLITE_UP = (
    "CREATE VIRTUAL TABLE segments_fts USING fts5(text, content='segments', content_rowid='rowid', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER segments_fts_insert AFTER INSERT ON segments BEGIN "
    "INSERT INTO segments_fts(rowid, text) VALUES (new.rowid, new.text); END",
    "CREATE TRIGGER segments_fts_delete AFTER DELETE ON segments BEGIN "
    "INSERT INTO segments_fts(segments_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END",
    "CREATE TRIGGER segments_fts_update AFTER UPDATE ON segments BEGIN "
    "INSERT INTO segments_fts(segments_fts, rowid, text) VALUES ('delete', old.rowid, old.text); "
    "INSERT INTO segments_fts(rowid, text) VALUES (new.rowid, new.text); END",
    "INSERT INTO segments_fts(segments_fts) VALUES ('rebuild')",
)
_SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS segments_fts_update",
    "DROP TRIGGER IF EXISTS segments_fts_delete",
    "DROP TRIGGER IF EXISTS segments_fts_insert",
    "DROP TABLE IF EXISTS segments_fts",
)
_POSTGRES_UP = (
    "ALTER TABLE segments ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple'::regconfig, regexp_replace(text, '[^[:alnum:]]+', ' ', 'g'))) STORED",
    "CREATE INDEX ix_segments_search_vector ON segments USING gin (search_vector)",
)
_POSTGRES_DOWN = (
    "DROP INDEX IF EXISTS ix_segments_search_vector",
    "ALTER TABLE segments DROP COLUMN IF EXISTS search_vector",
)


def upgrade() -> None:
    for statement in _SQLITE_UP if _is_sqlite() else _POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in _SQLITE_DOWN if _is_sqlite() else _POSTGRES_DOWN:
        op.execute(statement)


def _is_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"
