"""Output files as operators meet them: WebVTT escaping, the umask, and names at the file system's limit."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from transcriber.outputs import (
    MAX_NAME_BYTES,
    RENDERERS,
    TranscriptDoc,
    fit_file_name,
    output_stem,
    render_vtt,
    write_atomic,
    write_outputs,
)
from transcriber.segments import Segment


def doc(*segments: Segment) -> TranscriptDoc:
    return TranscriptDoc(source="call.m4a", segments=list(segments), language="en", duration=9.0, model="tiny.en")


# ---------------------------------------------------------------- WebVTT


@pytest.mark.parametrize(
    ("text", "cue"),
    [
        ("Tom & Jerry", "Tom &amp; Jerry"),
        ("if x < 3 then", "if x &lt; 3 then"),
        ("a -> b --> c", "a -&gt; b --&gt; c"),  # "-->" in a cue would read as a timing line
        ("<b>not bold</b>", "&lt;b&gt;not bold&lt;/b&gt;"),
        ("&amp; stays text", "&amp;amp; stays text"),
        ("first\n\nsecond", "first\nsecond"),  # a blank line would end the cue
    ],
)
def test_vtt_cue_text_is_escaped(text: str, cue: str) -> None:
    assert render_vtt(doc(Segment(0.0, 1.0, text))) == f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{cue}\n"


def test_vtt_speaker_in_a_voice_span_is_escaped() -> None:
    out = render_vtt(doc(Segment(0.0, 1.0, "Hi <there>", speaker="R&D <desk>")))
    assert out.endswith("\n<v R&amp;D &lt;desk&gt;>Hi &lt;there&gt;\n")


def test_other_formats_keep_the_text_as_spoken() -> None:
    line = doc(Segment(0.0, 1.0, "Tom & Jerry <3"))
    assert RENDERERS["txt"](line) == "Tom & Jerry <3\n"
    assert "Tom & Jerry <3" in RENDERERS["json"](line)


# ---------------------------------------------------------------- permissions


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path: Path, umask: None, mask: int, expected: int) -> None:
    os.umask(mask)
    write_outputs(doc(Segment(0.0, 1.0, "Hello.")), tmp_path / "call", ["txt", "srt", "vtt", "json"])
    assert {p.name: mode_of(p) for p in tmp_path.iterdir()} == {
        name: expected for name in ("call.txt", "call.srt", "call.vtt", "call.json")
    }


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_replaced_file_gets_the_umask_too(tmp_path: Path, umask: None) -> None:
    target = tmp_path / "a.txt"
    write_atomic(target, "old\n")
    os.umask(0o077)
    write_atomic(target, "new\n")
    assert (target.read_text(), mode_of(target)) == ("new\n", 0o600)


# ---------------------------------------------------------------- long names


def long_name(length: int, char: str = "x", end: str = "_200301_171119.m4a") -> str:
    """A recording's file name of exactly ``length`` bytes in UTF-8."""
    name = "Call recording +18134353769 "
    while len((name + char + end).encode()) <= length:
        name += char
    name += "y" * (length - len((name + end).encode()))
    return name + end


@pytest.mark.parametrize("char", ["x", "é", "通"])  # 1, 2 and 3 bytes per character
def test_a_255_byte_recording_name_gets_its_outputs(tmp_path: Path, char: str) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    audio = inbox / long_name(MAX_NAME_BYTES, char)
    audio.write_bytes(b"audio")  # the file system here takes the name: the outputs must fit beside it
    assert len(audio.name.encode()) == MAX_NAME_BYTES

    written = write_outputs(doc(Segment(0.0, 1.0, "Hello.")), output_stem(out, inbox, str(audio)), list(RENDERERS))
    assert sorted(p.suffix for p in written) == [".json", ".srt", ".txt", ".vtt"]
    assert all(len(p.name.encode()) <= MAX_NAME_BYTES for p in written)
    assert sorted(os.listdir(out)) == sorted(p.name for p in written)  # no temp file left
    assert written[0].name.startswith("Call recording +18134353769 " + char)


def test_the_unshortened_name_is_what_the_file_system_refuses(tmp_path: Path) -> None:
    """Why the stem is shortened: the same name with ``.json`` added does not fit in one component."""
    stem = Path(long_name(MAX_NAME_BYTES)).stem
    with pytest.raises(OSError) as caught:
        (tmp_path / f"{stem}.json").write_text("{}")
    assert caught.value.errno == errno.ENAMETOOLONG


def test_two_long_names_that_start_alike_get_files_of_their_own() -> None:
    first, second = long_name(250, end="_200301_171119"), long_name(250, end="_200301_171120")
    a, b = fit_file_name(first, reserve=5), fit_file_name(second, reserve=5)
    assert a != b
    assert len(a.encode()) <= 250 and len(b.encode()) <= 250
    assert a[:200] == first[:200]


@pytest.mark.parametrize("name", ["a", "Call recording +18134353769_200301_171119", "é" * 125, "x" * 250])
def test_names_that_fit_are_left_alone(name: str) -> None:
    assert fit_file_name(name, reserve=5) == name


def test_shortening_cuts_between_characters() -> None:
    shortened = fit_file_name("通" * 100, reserve=5)  # 300 bytes
    head, tag = shortened.split("~")
    assert set(head) == {"通"} and len(tag) == 12  # whole characters, then the hash
    assert 250 - 3 < len(shortened.encode()) <= 250
