"""A file written in bursts, with pauses longer than the settle time, is one recording of its final content.

Real files, real Postgres and SQLite, the real Ingester; time is a fake clock. While the path's
recording is queued and unclaimed, each new state of the file replaces its content in place,
and the path waits twice as long each time it changed after it was registered. Once an attempt
has claimed the recording, new content is a recording of its own (as before issue 11).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from speech import tone, write_audio
from transcriber import lifecycle
from transcriber.audio import probe_duration, sha256_of
from transcriber.db import transaction
from transcriber.ingest import Ingester
from transcriber.tables import Recording, utcnow

SETTLE = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def sent() -> list[tuple[uuid.UUID, str, str]]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(sessions: sessionmaker[Session], inbox: Path, sent: list, clock: Clock):  # type: ignore[no-untyped-def]
    def factory() -> Ingester:
        return Ingester(sessions, inbox, settle_seconds=SETTLE, send=lambda *message: sent.append(message), clock=clock)

    return factory


@pytest.fixture
def audio(tmp_path: Path) -> bytes:
    """A complete m4a: its index comes last, so only the whole file states a duration."""
    return write_audio(tmp_path / "whole.m4a", tone(20.0)).read_bytes()


def recordings(sessions: sessionmaker[Session]) -> list[Recording]:
    with sessions() as s:
        return list(s.scalars(select(Recording).order_by(Recording.created_at)))


def append(path: Path, chunk: bytes, watcher: Ingester | None = None) -> None:
    """Write more, and let ``watcher`` see it at once (as a file event makes it)."""
    with open(path, "ab") as handle:
        handle.write(chunk)
    if watcher is not None:
        assert watcher.scan() == 0


def wait_out(watcher: Ingester, clock: Clock, seconds: float) -> int:
    """Let ``seconds`` pass, scanning now and then as the watch loop does; new recordings registered."""
    registered = 0
    for _ in range(4):
        clock.now += seconds / 4
        registered += watcher.scan()
    return registered


def test_a_file_growing_in_bursts_becomes_one_recording_of_its_final_content(
    make, sessions, inbox: Path, sent, clock: Clock, audio: bytes, caplog
) -> None:
    path = inbox / "Anruf 0586469010.m4a"
    bursts = [audio[i : i + len(audio) // 4 + 1] for i in range(0, len(audio), len(audio) // 4 + 1)]
    assert len(bursts) == 4
    watcher = make()
    path.write_bytes(bursts[0])
    assert watcher.scan() == 0
    assert wait_out(watcher, clock, SETTLE) == 1  # the first burst looks settled: registered
    [first] = recordings(sessions)
    assert (first.file_size, first.duration_seconds) == (len(bursts[0]), None)

    settle = SETTLE
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        for n, burst in enumerate(bursts[1:], start=2):
            append(path, burst, watcher)  # the writer goes on after a pause longer than the settle time
            settle *= 2  # the path changed after it was registered: it waits twice as long each time
            assert wait_out(watcher, clock, settle - 0.5) == 0
            assert recordings(sessions)[0].file_size == sum(map(len, bursts[: n - 1])), "taken before it settled"
            assert wait_out(watcher, clock, 0.5) == 0  # settled: the queued recording takes the new content
            [row] = recordings(sessions)
            assert (row.id, row.status, row.file_size) == (first.id, "queued", sum(map(len, bursts[:n])))

    [row] = recordings(sessions)  # one recording, of the final content, with every field of it
    assert path.read_bytes() == audio
    assert (row.id, row.status, row.retry_count, row.task_id) == (first.id, "queued", 0, first.task_id)
    assert (row.file_size, row.content_sha256) == (len(audio), sha256_of(str(path)))
    assert row.file_mtime_ns == path.stat().st_mtime_ns
    assert row.duration_seconds == pytest.approx(probe_duration(str(path))) and row.duration_seconds > 19
    assert [(rid, name) for rid, _, name in sent] == [(first.id, path.name)]  # one message: it carries only the id
    assert caplog.text.count("changed before a worker took it") == 3

    clock.now += 3600
    assert watcher.scan() == 0 and make().scan() == 0  # known by its final path, size and mtime, after a restart too
    assert len(recordings(sessions)) == 1


@pytest.mark.parametrize("taken", ["processing", "requeued after an attempt"])
def test_once_an_attempt_took_the_recording_new_content_is_a_recording_of_its_own(
    make, sessions, inbox: Path, sent, clock: Clock, taken: str
) -> None:
    path = inbox / "call.m4a"
    path.write_bytes(os.urandom(4000))
    watcher = make()
    watcher.scan()
    assert wait_out(watcher, clock, SETTLE) == 1
    [first] = recordings(sessions)
    with transaction(sessions) as s:
        claim = lifecycle.claim_recording(s, recording_id=first.id, task_id=first.task_id, worker="w", now=utcnow())
        assert claim is not None
    if taken != "processing":  # back in the queue (its worker stopped), but an attempt ran on the old content
        with transaction(sessions) as s:
            lifecycle.release_claim(s, claim, now=utcnow(), reason="Interrupted: the worker shut down")
    append(path, os.urandom(1000), watcher)
    assert wait_out(watcher, clock, 2 * SETTLE) == 1
    old, new = recordings(sessions)
    assert (old.id, old.file_size) == (first.id, 4000)  # left to fail with "File changed" at its check
    assert old.status == ("processing" if taken == "processing" else "queued")
    assert (new.status, new.file_size, new.content_sha256) == ("queued", 5000, sha256_of(str(path)))
    assert [rid for rid, _, _ in sent] == [first.id, new.id]


def test_a_recording_another_file_shares_keeps_its_content(
    make, sessions, inbox: Path, sent, clock: Clock, caplog
) -> None:
    """b.m4a is a copy of a.m4a: when a.m4a then grows, b.m4a's audio must keep its recording."""
    a, b = inbox / "a.m4a", inbox / "b.m4a"
    a.write_bytes(os.urandom(3000))
    watcher = make()
    watcher.scan()
    assert wait_out(watcher, clock, SETTLE) == 1
    shutil.copyfile(a, b)
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert watcher.scan() == 0
        assert wait_out(watcher, clock, SETTLE) == 0
    assert "duplicate: " in caplog.text
    append(a, os.urandom(10), watcher)
    assert wait_out(watcher, clock, 2 * SETTLE) == 1
    old, new = recordings(sessions)
    assert old.content_sha256 == sha256_of(str(b)) and new.content_sha256 == sha256_of(str(a))


def test_a_restarted_watcher_updates_the_unclaimed_recording_of_a_file_that_grew_while_it_was_stopped(
    make, sessions, inbox: Path, sent, clock: Clock
) -> None:
    path = inbox / "call.m4a"
    path.write_bytes(os.urandom(3000))
    first_watcher = make()
    first_watcher.scan()
    assert wait_out(first_watcher, clock, SETTLE) == 1
    append(path, os.urandom(3000))  # while no watcher runs
    restarted = make()
    restarted.scan()
    assert wait_out(restarted, clock, SETTLE) == 0
    [row] = recordings(sessions)
    assert (row.file_size, row.content_sha256, row.status) == (6000, sha256_of(str(path)), "queued")
    assert len(sent) == 1
