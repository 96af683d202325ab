"""Two watchers register the same audio at once: the loser's batch falls back to one by one, every field kept.

The race is real: just before this watcher's batch insert reaches the database, a second
watcher (its own engine and connection) registers one of the same files and commits. The
insert then fails on the unique content key, and the files are registered one by one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from speech import tone, write_audio
from transcriber import lifecycle
from transcriber.audio import probe_duration, sha256_of
from transcriber.db import make_engine, make_session_factory, transaction
from transcriber.ingest import Ingester
from transcriber.tables import Recording, utcnow


@contextmanager
def rival_first(
    sessions: sessionmaker[Session], db_url: str, register: Callable[[Session], object]
) -> Iterator[list[str]]:
    """Run ``register`` as a second watcher (own engine, own transaction, committed) just before this
    session's first insert into ``recordings`` reaches the database; yields the inserts seen."""
    rival = make_engine(db_url)
    engine = sessions.kw["bind"]
    inserts: list[str] = []

    def before_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO RECORDINGS"):
            inserts.append(statement)
            if len(inserts) == 1:
                with transaction(make_session_factory(rival)) as s:
                    register(s)

    event.listen(engine, "before_cursor_execute", before_execute)
    try:
        yield inserts
    finally:
        event.remove(engine, "before_cursor_execute", before_execute)
        rival.dispose()
    assert len(inserts) > 1, "the batch insert did not fail: no race happened"


def test_a_batch_that_loses_the_race_keeps_duration_and_mtime(
    sessions: sessionmaker[Session], db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = tmp_path / "inbox"
    files = [write_audio(inbox / f"call {n}.m4a", tone(2.0 + n, hz=300 + 100 * n)) for n in range(3)]
    contested = files[1]

    def rival(s: Session) -> object:
        return lifecycle.register_recording(
            s, file_path=str(contested), file_name=contested.name, file_size=contested.stat().st_size,
            content_sha256=sha256_of(str(contested)), now=utcnow(), task_id="rival-task",
        )  # fmt: skip

    sent: list[tuple[object, str, str]] = []
    watcher = Ingester(sessions, inbox, settle_seconds=0, send=lambda *message: sent.append(message))
    with rival_first(sessions, db_url, rival), caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert watcher.scan() == 2

    with sessions() as s:
        rows = {r.file_name: r for r in s.scalars(select(Recording))}
    assert set(rows) == {f.name for f in files}
    assert rows[contested.name].task_id == "rival-task"  # the rival's, one recording for the audio
    assert f"duplicate: {contested} has the same audio as recording {rows[contested.name].id}" in caplog.text
    for path in (files[0], files[2]):  # registered one by one after the failed batch: nothing lost
        row = rows[path.name]
        assert row.duration_seconds == pytest.approx(probe_duration(str(path)))
        assert row.duration_seconds is not None and row.duration_seconds >= 2.0
        assert (row.file_size, row.file_mtime_ns) == (path.stat().st_size, os.stat(path).st_mtime_ns)
        assert (row.content_sha256, row.status, row.dispatched_at is not None) == (sha256_of(str(path)), "queued", True)
    assert sorted(name for _, _, name in sent) == [files[0].name, files[2].name]
    assert {task_id for _, task_id, _ in sent} == {rows[files[0].name].task_id, rows[files[2].name].task_id}


def test_register_files_falls_back_with_every_field_of_the_file(sessions: sessionmaker[Session], db_url: str) -> None:
    """The same race one level down, with a name kept as bytes: the rows made one by one hold every field."""
    new = [
        lifecycle.NewFile(
            f"/in/{n}.m4a",
            f"{n}.m4a",
            100 + n,
            f"{n:064x}",
            f"task-{n}",
            10.5 + n,
            1_700_000_000 + n,
            b"/in/\xfc%d.m4a" % n if n == 2 else None,
        )  # fmt: skip
        for n in range(3)
    ]

    def rival(s: Session) -> object:
        return lifecycle.register_recording(
            s, file_path="/other/0.m4a", file_name="0.m4a", file_size=100, content_sha256=new[0].content_sha256,
            now=utcnow(), task_id="rival",
        )  # fmt: skip

    with rival_first(sessions, db_url, rival), transaction(sessions) as s:
        results = [(f.file_name, outcome) for f, _, outcome in lifecycle.register_files(s, new, now=utcnow())]
    assert results == [
        ("0.m4a", lifecycle.Registered.DUPLICATE),
        ("1.m4a", lifecycle.Registered.CREATED),
        ("2.m4a", lifecycle.Registered.CREATED),
    ]
    with sessions() as s:
        rows = {r.content_sha256: r for r in s.scalars(select(Recording))}
    for f in new[1:]:
        row = rows[f.content_sha256]
        assert (row.file_path, row.file_name, row.file_size, row.duration_seconds, row.file_mtime_ns) == (
            f.file_path, f.file_name, f.file_size, f.duration_seconds, f.file_mtime_ns,
        )  # fmt: skip
        assert (row.file_path_bytes, row.task_id, row.status) == (f.file_path_bytes, f.task_id, "queued")
