"""Windows paths (drive letters, spaces, UNC shares) in WATCH_DIR and OUTPUT_DIR, checked on Linux with ntpath."""

from __future__ import annotations

import ntpath
from pathlib import Path

import pytest

from transcriber.outputs import output_stem_str
from transcriber.settings import load_settings


@pytest.mark.parametrize(
    ("output_dir", "watch_dir", "file_path", "expected"),
    [
        (r"C:\app\transcripts", r"C:\Recordings", r"C:\Recordings\Call recording +18134353769_200301_171119.m4a",
         r"C:\app\transcripts\Call recording +18134353769_200301_171119"),
        (r"D:\Call Transcripts", r"\\server\recordings", r"\\server\recordings\2026\03\a call.m4a",
         r"D:\Call Transcripts\2026\03\a call"),
        (r"\\nas\out", r"\\server\recordings", r"\\SERVER\Recordings\sub\x.M4A", r"\\nas\out\sub\x"),  # any case
        (r"D:\out", r"C:\Recordings", r"c:\recordings\Sub Dir\b.wav", r"D:\out\Sub Dir\b"),
        (r"D:\out", r"C:\Recordings", r"E:\elsewhere\c.m4a", r"D:\out\c"),  # another drive: top of OUTPUT_DIR
        (r"D:\out", r"C:\Recordings", r"C:\Recordings2\d.m4a", r"D:\out\d"),  # a sibling is not inside
    ],
)  # fmt: skip
def test_output_location_for_windows_paths(output_dir: str, watch_dir: str, file_path: str, expected: str) -> None:
    assert output_stem_str(output_dir, watch_dir, file_path, ntpath) == expected


def test_windows_paths_in_the_env_file_are_kept_verbatim(tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text(
        "WATCH_DIR=\\\\server\\recordings\\Call Center\n"
        "OUTPUT_DIR=D:\\Call Transcripts\n"
        'DATA_DIR="C:\\\\app\\\\data"\n',
        encoding="utf-8",
    )
    settings = load_settings(env)
    assert str(settings.watch_dir) == r"\\server\recordings\Call Center"
    assert str(settings.output_dir) == r"D:\Call Transcripts"
