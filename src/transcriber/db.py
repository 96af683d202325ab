"""Engine and sessions. Created by the process that uses them, never at import."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from transcriber.redact import redact_text

log = logging.getLogger(__name__)


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    """Create an engine suited to the URL (pre-ping for servers, WAL for SQLite)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


def wait_for_database(sessions: sessionmaker[Session], stop: threading.Event, *, max_wait: float = 30.0) -> bool:
    """Block until the database answers (backing off, one log line per try); False if ``stop`` came first."""
    delay = 1.0
    while not stop.is_set():
        try:
            with sessions() as session:
                session.execute(text("SELECT count(*) FROM recordings"))
            return True
        except (OperationalError, ProgrammingError) as exc:
            log.warning("database not ready (%s); trying again in %.0fs", describe_error(exc), delay)
            stop.wait(delay)
            delay = min(delay * 2, max_wait)
    return False


def describe_error(exc: BaseException) -> str:
    """A database error as one line for a log or ``error_message``, any password masked."""
    orig = getattr(exc, "orig", None) or exc
    return redact_text((str(orig).strip().splitlines() or [type(exc).__name__])[0])
