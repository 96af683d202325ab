"""The watched folder with real files on disk and a real database; time is a fake clock."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from transcriber import ingest
from transcriber.ingest import Ingester
from transcriber.tables import Recording


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sent() -> list[tuple[object, str, str]]:
    return []


@pytest.fixture
def make(sessions: sessionmaker[Session], tmp_path: Path, sent: list):  # type: ignore[no-untyped-def]
    def factory(clock: Clock | None = None, settle: float = 5.0) -> Ingester:
        return Ingester(
            sessions,
            tmp_path / "inbox",
            settle_seconds=settle,
            send=lambda *message: sent.append(message),
            clock=clock or Clock(),
        )

    (tmp_path / "inbox").mkdir()
    return factory


def names(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as s:
        return sorted(s.scalars(select(Recording.file_name)))


def test_a_file_still_being_copied_is_not_taken_until_it_settles(make, sessions, tmp_path: Path, sent) -> None:
    clock = Clock()
    watcher = make(clock)
    target = tmp_path / "inbox" / "Call recording +18134353769_200301_171119.m4a"
    with open(target, "wb") as handle:
        for _ in range(4):  # a slow copy: a chunk, then a scan a few seconds later
            handle.write(os.urandom(64 * 1024))
            handle.flush()
            assert watcher.scan() == 0
            clock.now += 3
    assert watcher.scan() == 0  # complete now, but not yet unchanged for 5 s
    clock.now += 5
    assert watcher.scan() == 1
    assert names(sessions) == [target.name]
    [(recording_id, task_id, file_name)] = sent
    with sessions() as s:
        rec = s.get(Recording, recording_id)
        assert rec is not None and (rec.status, rec.task_id, rec.file_size) == ("queued", task_id, 256 * 1024)
    clock.now += 60
    assert watcher.scan() == 0 and len(sent) == 1  # a rescan of an unchanged folder registers nothing


def test_odd_names_subfolders_and_ignored_files(make, sessions, tmp_path: Path, caplog) -> None:
    inbox = tmp_path / "inbox"
    wanted = [
        'sub/deeper/it\'s a "quoted" call; DROP TABLE recordings; --.M4A',
        "café ñandú 通话.mp3",
        "x" * 200 + ".wav",
    ]
    ignored = ["~$lock.m4a", ".hidden.m4a", "copying.m4a.part", "dl.crdownload", "a.tmp", "notes.txt"]
    for name in wanted + ignored:
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(os.urandom(1000))
    watcher = make(settle=0)
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert watcher.scan() == 3
        watcher.scan()
        watcher.scan()
    assert names(sessions) == sorted(Path(n).name for n in wanted)
    ignored_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ignoring")]
    assert len(ignored_lines) == len(ignored)  # once each, not on every scan


def test_duplicate_audio_and_changed_files(make, sessions, tmp_path: Path, caplog) -> None:
    inbox = tmp_path / "inbox"
    audio = os.urandom(5000)
    (inbox / "first.m4a").write_bytes(audio)
    watcher = make(settle=0)
    assert watcher.scan() == 1
    (inbox / "again.m4a").write_bytes(audio)
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert watcher.scan() == 0
    assert any("duplicate" in r.getMessage() and "first.m4a" in r.getMessage() for r in caplog.records)
    (inbox / "first.m4a").write_bytes(os.urandom(6000))  # new audio under the old name
    assert watcher.scan() == 1
    assert names(sessions) == ["first.m4a", "first.m4a"]


def test_restart_does_not_rehash_known_files(make, tmp_path: Path, monkeypatch) -> None:
    for n in range(20):
        (tmp_path / "inbox" / f"{n}.wav").write_bytes(os.urandom(100 + n))
    assert make(settle=0).scan() == 20
    hashed: list[str] = []
    real = ingest.sha256_of
    monkeypatch.setattr(ingest, "sha256_of", lambda p: hashed.append(p) or real(p))
    restarted = make(settle=0)
    assert restarted.scan() == 0 and hashed == []
    (tmp_path / "inbox" / "new.wav").write_bytes(b"new audio")
    assert restarted.scan() == 1 and len(hashed) == 1


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_symlinks_are_not_followed(make, sessions, tmp_path: Path) -> None:
    outside = tmp_path / "secret.wav"
    outside.write_bytes(os.urandom(100))
    (tmp_path / "inbox" / "link.wav").symlink_to(outside)
    assert make(settle=0).scan() == 0
    assert names(sessions) == []


def test_a_file_that_stays_unreadable_is_registered_with_its_cause_on_record(
    make, sessions, tmp_path: Path, monkeypatch, caplog
) -> None:
    """A copier's lock passes; a missing permission does not. (The real permission case: tests/acceptance.)"""
    (tmp_path / "inbox" / "locked.m4a").write_bytes(os.urandom(300))
    real = ingest.sha256_of
    locked = True

    def sha256_of(path: str) -> str:
        if locked and path.endswith("locked.m4a"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(ingest, "sha256_of", sha256_of)
    clock = Clock()
    watcher = make(clock, settle=1.0)  # unreadable for 4 x settle before it is registered
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert watcher.scan() == 0  # first seen
        clock.now += 1
        assert watcher.scan() == 0  # settled, but cannot be read yet
        clock.now += 3
        assert watcher.scan() == 0  # still within the grace
        clock.now += 1.5
        assert watcher.scan() == 1
    with sessions() as s:
        [recording] = s.scalars(select(Recording))
    assert recording.content_sha256.startswith("unread:") and recording.status == "queued"
    assert "cannot read" in caplog.text and "registering it so the cause is on record" in caplog.text
    locked = False
    clock.now += 10
    assert watcher.scan() == 0  # readable now: known by path, size and mtime, not registered twice
    assert make(clock, settle=1.0).scan() == 0  # nor by a restarted watcher


def test_a_file_locked_by_its_copier_is_waited_for_not_registered_as_unreadable(
    make, sessions, tmp_path: Path, monkeypatch
) -> None:
    """Windows: a copy in progress can look settled (full size, same mtime) while the copier holds it."""
    (tmp_path / "inbox" / "copying.m4a").write_bytes(os.urandom(300))
    real = ingest.sha256_of
    locked = True

    def sha256_of(path: str) -> str:
        if locked:
            exc = PermissionError(13, "The process cannot access the file")
            exc.winerror = 32  # type: ignore[attr-defined]  # ERROR_SHARING_VIOLATION
            raise exc
        return real(path)

    monkeypatch.setattr(ingest, "sha256_of", sha256_of)
    clock = Clock()
    watcher = make(clock, settle=1.0)
    for _ in range(10):  # far past the grace an unreadable file gets
        assert watcher.scan() == 0
        clock.now += 5
    locked = False
    assert watcher.scan() == 1
    with sessions() as s:
        [recording] = s.scalars(select(Recording))
    assert not recording.content_sha256.startswith("unread:")  # the real audio, hashed


# ---------------------------------------------------------------- files that arrive complete (issue 15)


class Events:
    """The watcher's real file events (watchdog) on a folder, fed to an Ingester as the watch loop feeds them."""

    def __init__(self, watcher: Ingester) -> None:
        import threading

        self.watcher = watcher
        self.wake = threading.Event()
        self.observer = ingest._start_observer(watcher.watch_dir, self.wake, watcher.arrived_complete)
        assert self.observer is not None, "file events unavailable here"

    def reported(self, path: Path) -> bool:
        return os.path.normpath(str(path)) in self.watcher.complete

    def wait(self, what: str, check) -> None:  # type: ignore[no-untyped-def]
        import time

        deadline = time.monotonic() + 30  # a failure guard: the wait ends on the event's state
        while not check():
            assert time.monotonic() < deadline, f"no file event for {what}"
            time.sleep(0.02)

    def close(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)


@pytest.fixture
def events(make):  # type: ignore[no-untyped-def]
    watcher = make(settle=3600.0)  # an hour: only "complete" takes a file within this test
    feed = Events(watcher)
    yield feed
    feed.close()


def test_a_file_renamed_in_from_outside_is_taken_at_the_next_scan(events, sessions, tmp_path: Path, sent) -> None:
    staged = tmp_path / "staging" / "Call recording +18134353769_200301_171119.m4a"
    staged.parent.mkdir()
    staged.write_bytes(os.urandom(32 * 1024))
    target = tmp_path / "inbox" / staged.name
    staged.rename(target)  # how copiers and recorders finish a file: write elsewhere, then rename in
    events.wait("the rename", lambda: events.reported(target))
    assert events.watcher.scan() == 1  # with WATCH_SETTLE_SECONDS an hour
    assert names(sessions) == [target.name] and len(sent) == 1


def test_a_temporary_name_renamed_to_its_own_is_taken(events, sessions, tmp_path: Path) -> None:
    partial = tmp_path / "inbox" / "call.m4a.part"  # a browser's or WinSCP's download, then its rename
    partial.write_bytes(os.urandom(16 * 1024))
    final = partial.with_name("call.m4a")
    partial.rename(final)
    events.wait("the rename", lambda: events.reported(final))
    assert events.watcher.scan() == 1 and names(sessions) == ["call.m4a"]


def test_a_file_closed_after_writing_is_taken_and_one_still_open_is_not(events, sessions, tmp_path: Path) -> None:
    growing = tmp_path / "inbox" / "still recording.m4a"
    with open(growing, "wb") as handle:
        handle.write(os.urandom(16 * 1024))
        handle.flush()
        os.fsync(handle.fileno())
        events.wait("the write", events.wake.is_set)  # the watcher heard of it ...
        assert events.watcher.scan() == 0  # ... but an open file is still being written: it settles
        assert not events.reported(growing)
    events.wait("the close", lambda: events.reported(growing))
    assert events.watcher.scan() == 1 and names(sessions) == ["still recording.m4a"]


def test_a_file_changed_after_its_close_settles_as_usual(events, sessions, tmp_path: Path) -> None:
    target = tmp_path / "inbox" / "call.m4a"
    target.write_bytes(os.urandom(16 * 1024))
    events.wait("the close", lambda: events.reported(target))
    events.watcher.complete[os.path.normpath(str(target))] = ingest.Observation(1, 1)  # as if it looked so then
    assert events.watcher.scan() == 0  # it does not look as it did when it was closed: written on since
    assert names(sessions) == []


def test_without_trust_close_a_closed_file_settles_and_a_rename_does_not(make, sessions, tmp_path: Path) -> None:
    """WATCH_TRUST_CLOSE=false, for a recorder that closes and reopens its file while it records."""
    watcher = make(settle=3600.0)
    watcher.trust_close = False
    closed, renamed = tmp_path / "inbox" / "closed.m4a", tmp_path / "inbox" / "renamed.m4a"
    closed.write_bytes(os.urandom(16 * 1024))
    renamed.write_bytes(os.urandom(16 * 1024))
    watcher.arrived_complete(str(closed), closed=True)
    watcher.arrived_complete(str(renamed))
    assert watcher.scan() == 1 and names(sessions) == ["renamed.m4a"]


def test_a_path_written_in_bursts_loses_the_fast_path(make, sessions, tmp_path: Path) -> None:
    """A recorder that closes and reopens the file: once its path changed after a registration, it settles."""
    clock = Clock()
    watcher = make(clock, settle=5.0)
    target = tmp_path / "inbox" / "call.m4a"
    target.write_bytes(os.urandom(16 * 1024))
    watcher.arrived_complete(str(target), closed=True)
    assert watcher.scan() == 1

    def registered_size() -> int:
        with sessions() as s:
            return int(s.scalar(select(Recording.file_size)) or 0)

    with open(target, "ab") as handle:  # the recorder appends and closes again
        handle.write(os.urandom(16 * 1024))
    watcher.arrived_complete(str(target), closed=True)
    watcher.scan()
    assert registered_size() == 16 * 1024  # not taken at once: its path changed after it was registered
    clock.now += 10  # twice the settle time: a path that changed after registration waits longer
    watcher.scan()
    assert registered_size() == 32 * 1024  # the queued recording now holds the whole file
