"""Any name the file system holds, through the real Ingester, on real Postgres and SQLite (issue 11).

Names that are not UTF-8 (Latin-1 bytes from SMB shares), names with line breaks, 255-byte
names and paths past what the system opens: each is registered, or left out with one logged
reason; nothing stops the scan. Files are made from bytes paths, as a Samba share writes them.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from transcriber import ingest
from transcriber.audio import sha256_of
from transcriber.ingest import Ingester, run_watch_loop
from transcriber.names import real_path
from transcriber.tables import Recording

pytestmark = pytest.mark.skipif(os.name == "nt", reason="Windows names are UTF-16: they are never bytes that fail")

LATIN1 = b"Anruf M\xfcller 0586469010.m4a"
BROKEN = b"\xff\xfe broken \xc3 utf-8.m4a"


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def sent() -> list[tuple[object, str, str]]:
    return []


@pytest.fixture
def make(sessions: sessionmaker[Session], inbox: Path, sent: list):  # type: ignore[no-untyped-def]
    def factory() -> Ingester:
        return Ingester(sessions, inbox, settle_seconds=0, send=lambda *message: sent.append(message))

    return factory


def write(folder: Path | bytes, name: bytes, content: bytes) -> bytes:
    """Create ``folder/name`` from bytes, as a share with Latin-1 names does; returns the exact path."""
    path = os.fsencode(folder) + b"/" + name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    return path


def rows(sessions: sessionmaker[Session]) -> list[Recording]:
    with sessions() as s:
        return list(s.scalars(select(Recording).order_by(Recording.file_name)))


def assert_loggable(caplog: pytest.LogCaptureFixture) -> None:
    """Every line the watcher logged can be written to a UTF-8 log file, and is one line."""
    for record in caplog.records:
        message = record.getMessage()
        message.encode("utf-8")
        assert "\n" not in message, message


def test_names_that_are_not_utf8_are_registered_readable_with_their_exact_bytes(
    make, sessions, inbox: Path, sent, caplog, monkeypatch
) -> None:
    contents = {LATIN1: os.urandom(3000), BROKEN: os.urandom(3001), "Anruf Müller ok.m4a".encode(): os.urandom(3002)}
    exact = {write(inbox, name, content): content for name, content in contents.items()}
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert make().scan() == 3
    found = rows(sessions)
    assert [r.file_name for r in found] == [
        "Anruf Müller 0586469010.m4a",
        "Anruf Müller ok.m4a",
        "ÿþ broken Ã utf-8.m4a",
    ]
    for recording in found:
        path = real_path(recording.file_path, recording.file_path_bytes)  # what the worker opens
        assert os.fsencode(path) in exact
        assert sha256_of(path) == recording.content_sha256
        assert recording.file_size == len(exact[os.fsencode(path)])
        assert recording.file_mtime_ns == os.stat(path).st_mtime_ns
        assert recording.file_path == str(inbox / recording.file_name)
        assert (recording.file_path_bytes is None) == (recording.file_name == "Anruf Müller ok.m4a")
    assert sorted(name for _, _, name in sent) == [r.file_name for r in found]  # the broker gets readable names
    assert_loggable(caplog)
    assert f"registered {inbox}/Anruf M\\xfcller 0586469010.m4a (recorded as {inbox}/Anruf Müller" in caplog.text

    hashed: list[str] = []
    monkeypatch.setattr(ingest, "sha256_of", lambda p: hashed.append(p) or sha256_of(p))
    restarted = make()  # knows the files by their exact paths: neither hashed nor registered again
    assert restarted.scan() == 0 and hashed == []
    assert len(rows(sessions)) == 3


def test_a_name_with_line_breaks_is_registered_and_logged_on_one_line(make, sessions, inbox: Path, caplog) -> None:
    path = write(inbox, b"two\nlines\r\x1b[31m red.m4a", os.urandom(2000))
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert make().scan() == 1
    [recording] = rows(sessions)
    assert recording.file_name == "two\\nlines\\r\\x1b[31m red.m4a"
    assert os.fsencode(real_path(recording.file_path, recording.file_path_bytes)) == path
    assert_loggable(caplog)
    assert make().scan() == 0


def test_long_names_and_deep_folders_are_registered_and_paths_too_long_to_open_are_left_out_once(
    make, sessions, inbox: Path, caplog
) -> None:
    """255-byte names (the most a file system takes) register; past PATH_MAX, one logged reason each."""
    write(inbox, b"x" * 251 + b".m4a", os.urandom(1000))
    write(inbox, b"\xfc" * 251 + b".m4a", os.urandom(1001))  # 255 Latin-1 bytes: longer once readable
    folder = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    try:
        while len(os.fsencode(inbox)) + 252 * (depth + 1) + 256 < 4096:  # as deep as a 255-byte name still opens
            folder = _descend(folder, b"d" * 249 + b"%02d" % depth)
            depth += 1
        deep = os.path.join(os.fsencode(inbox), *[b"d" * 249 + b"%02d" % n for n in range(depth)])
        write(deep, b"y" * 251 + b".m4a", os.urandom(1002))
        folder = _descend(folder, b"e" * 250)  # the folder still opens, a 255-byte name in it does not
        _write_at(folder, b"too long.m4a".rjust(255, b"z"), os.urandom(1003))
        folder = _descend(folder, b"f" * 250)  # this folder itself is past PATH_MAX
        _write_at(folder, b"unreachable.m4a", os.urandom(1004))
    finally:
        os.close(folder)
    watcher = make()
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert watcher.scan() == 3
        for _ in range(3):
            assert watcher.scan() == 0
    assert sorted(len(r.file_name.encode()) for r in rows(sessions)) == [255, 255, 2 * 251 + 4]
    assert os.path.exists(real_path(max(rows(sessions), key=lambda r: len(r.file_path)).file_path, None))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # one reason each, not one per scan
    assert any("leaving out" in w and "too long to open" in w for w in warnings)
    assert any("cannot read folder" in w and "File name too long" in w for w in warnings)
    assert_loggable(caplog)


def _descend(folder: int, name: bytes) -> int:
    os.mkdir(name, dir_fd=folder)
    inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder)
    os.close(folder)
    return inner


def _write_at(folder: int, name: bytes, content: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=folder)
    os.write(fd, content)
    os.close(fd)


def test_an_unexpected_error_with_one_file_costs_that_file_only(
    make, sessions, inbox: Path, caplog, monkeypatch
) -> None:
    for n in range(3):
        write(inbox, b"call %d.m4a" % n, os.urandom(1000 + n))
    bad = write(inbox, b"odd M\xfcller.m4a", os.urandom(999))
    real_probe = ingest.probe_duration
    broken = True

    def probe_duration(path: str) -> float | None:
        if broken and os.fsencode(path) == bad:
            raise RuntimeError(f"decoder surprise on {path}")  # the message carries the surrogate name
        return real_probe(path)

    monkeypatch.setattr(ingest, "probe_duration", probe_duration)
    watcher = make()
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert watcher.scan() == 3
        assert watcher.scan() == 0 and watcher.scan() == 0
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(f"leaving out {inbox}/odd M\\xfcller.m4a: unexpected RuntimeError: decoder surprise")
    assert_loggable(caplog)
    broken = False
    with open(bad, "ab") as handle:  # it changes: looked at again
        handle.write(b"more")
    assert watcher.scan() == 1
    assert "odd Müller.m4a" in [r.file_name for r in rows(sessions)]


def test_a_file_the_database_refuses_costs_that_file_only(make, sessions, inbox: Path, caplog, monkeypatch) -> None:
    """Were a name to reach the database unreadable (as before issue 11), the batch is retried file by file."""
    monkeypatch.setattr(ingest, "readable_path", lambda path: path)
    for n in range(3):
        write(inbox, b"call %d.m4a" % n, os.urandom(1000 + n))
    write(inbox, LATIN1, os.urandom(999))
    watcher = make()
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        assert watcher.scan() == 3
        assert watcher.scan() == 0
    assert sorted(r.file_name for r in rows(sessions)) == ["call 0.m4a", "call 1.m4a", "call 2.m4a"]
    refused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("leaving out")]
    assert refused == [
        f"leaving out {inbox}/Anruf M\\xfcller 0586469010.m4a: the database refused it (" + refused[0].split(" (", 1)[1]
    ]
    assert "surrogates not allowed" in refused[0]


def test_the_watch_loop_survives_a_scan_that_fails(make, caplog) -> None:
    watcher = make()
    stop = threading.Event()
    calls: list[int] = []

    def scan() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("not any one file's doing")
        stop.set()
        return 0

    watcher.scan = scan  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="transcriber.ingest"):
        run_watch_loop(watcher, poll_seconds=0.01, stop=stop, use_events=False)
    assert len(calls) == 2
    assert "the scan failed; trying again" in caplog.text
