"""The Ingester's settle logic (which files are ready to register), with a fake clock and no database.

Registering itself needs the database and is covered by tests/integration/test_ingest.py.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from transcriber.ingest import Ingester


class FakeSessions:
    """Stands in for the sessionmaker: the Ingester only reads (id, file_path, file_path_bytes, file_size,
    file_mtime_ns) of known recordings."""

    def __init__(self, registered: list[tuple[str, int, int | None]] | None = None) -> None:
        self.registered = [(uuid.uuid4(), path, None, size, mtime) for path, size, mtime in registered or []]

    def __call__(self) -> FakeSessions:
        return self

    def __enter__(self) -> FakeSessions:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, statement: Any) -> FakeSessions:
        return self

    def all(self) -> list[tuple[uuid.UUID, str, None, int, int | None]]:
        return self.registered


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


Registered = list[tuple[str, int, int | None]]  # file_path, file_size, file_mtime_ns


def make_ingester(inbox: Path, clock: Clock, settle: float = 5.0, registered: Registered | None = None):
    def send(*_: object) -> None:
        raise AssertionError("settle logic must not send")

    return Ingester(FakeSessions(registered), inbox, settle_seconds=settle, send=send, clock=clock)  # type: ignore[arg-type]


def ready_names(ingester: Ingester) -> list[str]:
    return sorted(os.path.relpath(item.path, ingester.watch_dir) for item in ingester._find_settled())


def test_new_file_is_ready_only_after_the_settle_time(inbox: Path) -> None:
    (inbox / "a.m4a").write_bytes(b"x" * 10)
    clock = Clock()
    ingester = make_ingester(inbox, clock)
    assert ready_names(ingester) == []
    clock.now += 4.9
    assert ready_names(ingester) == []
    clock.now += 0.1
    ready = ingester._find_settled()
    assert [(Path(item.path).name, item.observation.size) for item in ready] == [("a.m4a", 10)]


def test_a_growing_file_restarts_the_settle_time(inbox: Path) -> None:
    path = inbox / "a.m4a"
    path.write_bytes(b"x" * 10)
    clock = Clock()
    ingester = make_ingester(inbox, clock)
    ingester._find_settled()
    clock.now += 3
    path.write_bytes(b"x" * 20)  # still being copied
    assert ready_names(ingester) == []
    clock.now += 4.9
    assert ready_names(ingester) == []
    clock.now += 0.1
    assert ready_names(ingester) == ["a.m4a"]


def test_a_touched_file_restarts_the_settle_time(inbox: Path) -> None:
    path = inbox / "a.m4a"
    path.write_bytes(b"x" * 10)
    clock = Clock()
    ingester = make_ingester(inbox, clock)
    ingester._find_settled()
    clock.now += 3
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same size, new mtime
    clock.now += 2
    assert ready_names(ingester) == []


def test_zero_settle_time_takes_files_on_first_sight(inbox: Path) -> None:
    (inbox / "sub").mkdir()
    (inbox / "sub" / "b.wav").write_bytes(b"x")
    (inbox / "a.mp3").write_bytes(b"x")
    assert ready_names(make_ingester(inbox, Clock(), settle=0)) == ["a.mp3", os.path.join("sub", "b.wav")]


def test_ignored_names_never_become_pending(inbox: Path) -> None:
    for name in (".hidden.m4a", "~$lock.m4a", "a.m4a.part", "notes.txt"):
        (inbox / name).write_bytes(b"x")
    clock = Clock()
    ingester = make_ingester(inbox, clock, settle=0)
    assert ready_names(ingester) == []
    assert ingester.pending == {}
    assert {Path(path).name for path in ingester.ignored} == {".hidden.m4a", "~$lock.m4a", "a.m4a.part", "notes.txt"}


def test_symlinks_are_not_followed(inbox: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"x")
    (inbox / "link.wav").symlink_to(outside)
    ingester = make_ingester(inbox, Clock(), settle=0)
    assert ready_names(ingester) == []
    assert [Path(path).name for path in ingester.ignored] == ["link.wav"]


def test_a_file_that_vanishes_while_settling_is_forgotten(inbox: Path) -> None:
    path = inbox / "a.m4a"
    path.write_bytes(b"x")
    ingester = make_ingester(inbox, Clock())
    ingester._find_settled()
    assert list(ingester.pending) == [str(path)]
    path.unlink()
    ingester._find_settled()
    assert ingester.pending == {}


@pytest.mark.parametrize("mtime", ["same", None])  # None: a row registered before migration 0002
def test_a_file_registered_before_start_unchanged_is_not_taken_again(inbox: Path, mtime: str | None) -> None:
    path = inbox / "a.m4a"
    path.write_bytes(b"x" * 10)
    known = path.stat().st_mtime_ns if mtime else None
    ingester = make_ingester(inbox, Clock(), settle=0, registered=[(os.path.abspath(path), 10, known)])
    assert ready_names(ingester) == []
    assert str(path) in ingester.known


def test_a_registered_file_whose_size_changed_is_taken(inbox: Path) -> None:
    path = inbox / "a.m4a"
    path.write_bytes(b"x" * 12)
    ingester = make_ingester(inbox, Clock(), settle=0, registered=[(os.path.abspath(path), 10, None)])
    assert ready_names(ingester) == ["a.m4a"]


def test_a_file_replaced_by_one_of_the_same_size_while_stopped_is_taken(inbox: Path) -> None:
    path = inbox / "a.m4a"
    path.write_bytes(b"y" * 10)
    old_mtime = path.stat().st_mtime_ns - 10**9
    ingester = make_ingester(inbox, Clock(), settle=0, registered=[(os.path.abspath(path), 10, old_mtime)])
    assert ready_names(ingester) == ["a.m4a"]
