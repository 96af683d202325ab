"""The worker's checks on a recording's file: under WATCH_DIR, still the registered audio, unchanged meanwhile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from transcriber.audio import (
    UNREAD_PREFIX,
    check_inside,
    check_same_audio,
    check_unchanged_since,
    file_state,
    sha256_of,
    unread_key,
)
from transcriber.errors import PermanentError


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    return folder


def test_files_under_watch_dir_are_allowed(inbox: Path) -> None:
    check_inside(str(inbox / "sub" / "call.m4a"), inbox)
    check_inside(str(inbox / "sub" / ".." / "call.m4a"), inbox)


@pytest.mark.parametrize("where", ["sibling", "parent", "dotdot", "prefix"])
def test_files_outside_watch_dir_are_refused(inbox: Path, where: str) -> None:
    path = {
        "sibling": inbox.parent / "other" / "call.m4a",
        "parent": inbox.parent / "call.m4a",
        "dotdot": inbox / "sub" / ".." / ".." / "call.m4a",
        "prefix": Path(str(inbox) + "-evil") / "call.m4a",  # shares the text prefix, not the folder
    }[where]
    with pytest.raises(PermanentError, match=r"^Refused: .* is outside WATCH_DIR"):
        check_inside(str(path), inbox)


def test_a_link_inside_pointing_outside_is_refused(inbox: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.m4a"
    secret.write_bytes(b"x")
    (inbox / "link.m4a").symlink_to(secret)
    (inbox / "linked folder").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(PermanentError, match="outside WATCH_DIR"):
        check_inside(str(inbox / "link.m4a"), inbox)
    with pytest.raises(PermanentError, match="outside WATCH_DIR"):
        check_inside(str(inbox / "linked folder" / "secret.m4a"), inbox)


def test_same_audio_passes_and_other_audio_fails(tmp_path: Path) -> None:
    path = tmp_path / "call.m4a"
    path.write_bytes(b"a" * 100)
    digest = sha256_of(str(path))
    assert check_same_audio(str(path), size=100, content_key=digest) == file_state(str(path))
    path.write_bytes(b"b" * 100)  # same size, other bytes
    with pytest.raises(PermanentError, match=r"^File changed since it was registered: .*\(100 bytes, was 100\)"):
        check_same_audio(str(path), size=100, content_key=digest)
    path.write_bytes(b"b" * 50)
    with pytest.raises(PermanentError, match=r"\(50 bytes, was 100\)"):
        check_same_audio(str(path), size=100, content_key=digest)


def test_an_unread_key_skips_the_content_check_but_not_the_size(tmp_path: Path) -> None:
    path = tmp_path / "call.m4a"
    path.write_bytes(b"a" * 100)
    key = unread_key(str(path), 100, 1)
    assert len(key) == 64 and key.startswith(UNREAD_PREFIX)
    assert key == unread_key(str(path), 100, 1) != unread_key(str(path), 100, 2)  # stable, and per version
    check_same_audio(str(path), size=100, content_key=key)
    with pytest.raises(PermanentError, match="File changed"):
        check_same_audio(str(path), size=99, content_key=key)


def test_a_rewrite_during_the_attempt_is_caught_a_deletion_is_not(tmp_path: Path) -> None:
    path = tmp_path / "call.m4a"
    path.write_bytes(b"a" * 100)
    before = file_state(str(path))
    assert before is not None
    check_unchanged_since(str(path), before)
    os.utime(path, ns=(before.mtime_ns + 10**9, before.mtime_ns + 10**9))
    with pytest.raises(PermanentError, match=r"^File changed while it was being transcribed: .*\(100 -> 100 bytes\)"):
        check_unchanged_since(str(path), before)
    path.unlink()  # deleted after it was read: the transcript stands
    check_unchanged_since(str(path), before)


@pytest.mark.parametrize(
    ("path", "root", "inside"),
    [
        (r"D:\Recordings\2026\call.m4a", r"D:\Recordings", True),
        (r"d:\recordings\call.m4a", r"D:\Recordings", True),  # Windows paths ignore case
        (r"D:\Recordings", "D:\\Recordings\\", True),
        (r"D:\Recordings-evil\call.m4a", r"D:\Recordings", False),
        (r"E:\Recordings\call.m4a", r"D:\Recordings", False),  # another drive
        (r"\\server\calls\in\call.m4a", r"\\SERVER\Calls\in", True),  # UNC share
        (r"\\server\other\call.m4a", r"\\server\calls", False),
    ],
)
def test_inside_watch_dir_with_windows_rules(path: str, root: str, inside: bool) -> None:
    import ntpath

    from transcriber.audio import is_inside

    assert is_inside(path, root, ntpath) is inside


def _refused(winerror: int | None):  # type: ignore[no-untyped-def]
    def fake_open(*_: object, **__: object) -> None:
        exc = PermissionError(13, "Permission denied")
        if winerror is not None:
            exc.winerror = winerror  # type: ignore[attr-defined]  # what Windows sets; POSIX has no such field
        raise exc

    return fake_open


def test_a_file_locked_by_another_program_is_retried_a_forbidden_one_is_not(tmp_path: Path, monkeypatch) -> None:
    """Windows raises PermissionError for a file another program holds (sharing violation): that passes."""
    from transcriber import audio
    from transcriber.errors import RetryableError

    path = tmp_path / "call.m4a"
    path.write_bytes(b"a" * 10)
    monkeypatch.setattr(audio, "open", _refused(32), raising=False)
    with pytest.raises(RetryableError, match="^File in use: .* is locked by another program$"):
        audio.check_readable(str(path))
    monkeypatch.setattr(audio, "open", _refused(5), raising=False)  # ERROR_ACCESS_DENIED
    with pytest.raises(PermanentError, match="^Permission denied: "):
        audio.check_readable(str(path))
    monkeypatch.setattr(audio, "open", _refused(None), raising=False)  # POSIX EACCES
    with pytest.raises(PermanentError, match="^Permission denied: "):
        audio.check_readable(str(path))
