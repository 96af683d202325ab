"""Alembic environment: the URL comes from the caller or the settings, never a hard-coded one."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from alembic import context
from sqlalchemy import Connection

from transcriber.db import make_engine
from transcriber.tables import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from transcriber.settings import load_settings

    return load_settings().database_url


def _include_name(name: str | None, type_: str, parent_names: MutableMapping[Any, str | None]) -> bool:
    """Leave the search index (0007_search.py) out of ``alembic check``: it is SQL the models do not describe.

    Postgres: the generated ``segments.search_vector`` and its GIN index; SQLite: the FTS5 table
    ``segments_fts`` and the shadow tables FTS5 makes for it (``segments_fts_data``, ``_idx``, ...).
    """
    if type_ == "table":
        return not (name or "").startswith("segments_fts")
    if type_ == "column" and parent_names.get("table_name") == "segments":
        return name != "search_vector"
    if type_ == "index":
        return name != "ix_segments_search_vector"
    return True


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        engine = make_engine(_url())
        with engine.connect() as conn:
            _run(conn)
        engine.dispose()
