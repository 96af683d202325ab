"""Which names in the watched folder are taken, and when a file counts as settled."""

from __future__ import annotations

import pytest

from transcriber.ingest import has_settled, ignore_reason


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (".x.m4a", "hidden or temporary file"),
        ("~$x.m4a", "hidden or temporary file"),  # Office-style lock file
        ("a.m4a.part", "file still being copied or downloaded"),
        ("A.M4A.PART", "file still being copied or downloaded"),
        ("a.crdownload", "file still being copied or downloaded"),
        ("a.tmp", "file still being copied or downloaded"),
        ("a.mp3.filepart", "file still being copied or downloaded"),
        ("notes.txt", "not an audio or video file"),
        ("no_extension", "not an audio or video file"),
        ("m4a", "not an audio or video file"),
    ],
)
def test_ignored_names(name: str, reason: str) -> None:
    assert ignore_reason(name) == reason


@pytest.mark.parametrize(
    "name",
    [
        "Call recording +18134353769_200301_171119.M4A",
        "café ñ.mp3",
        'it\'s "quoted".wav',
        "meeting.2024-03-01.flac",
        "clip.MP4",
        "voice memo (1).ogg",
    ],
)
def test_accepted_names(name: str) -> None:
    assert ignore_reason(name) is None


@pytest.mark.parametrize(
    ("first_seen_unchanged", "now", "settle_seconds", "settled"),
    [
        (100.0, 105.0, 5.0, True),  # exactly the settle time
        (100.0, 104.9, 5.0, False),
        (100.0, 200.0, 5.0, True),
        (100.0, 100.0, 0.0, True),  # settle 0: taken on first sight
        (100.0, 100.0, 5.0, False),
    ],
)
def test_has_settled(first_seen_unchanged: float, now: float, settle_seconds: float, settled: bool) -> None:
    assert has_settled(first_seen_unchanged, now, settle_seconds) is settled
