"""Where transcripts go (``output_stem``) and how they are written (atomically, no temp files left)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from transcriber.outputs import RENDERERS, TranscriptDoc, output_stem, redacted_document, write_atomic, write_outputs
from transcriber.segments import Segment

DOC = TranscriptDoc(
    source="call.m4a", segments=[Segment(0.0, 2.0, "Hello.")], language="en", duration=2.0, model="tiny.en"
)


@pytest.mark.parametrize(
    ("file_path", "expected"),
    [
        ("inbox/a.m4a", "out/a"),
        ("inbox/sub/deeper/Call recording +18134353769_200301_171119.M4A",
         "out/sub/deeper/Call recording +18134353769_200301_171119"),
        ("inbox/café ñ.mp3", "out/café ñ"),
        ("inbox/it's \"quoted\".wav", "out/it's \"quoted\""),
        ("inbox/a.b.mp3", "out/a.b"),  # only the last suffix goes
        ("inbox/sub/../b.wav", "out/b"),
        ("elsewhere/x.wav", "out/x"),  # registered by hand outside WATCH_DIR: top of OUTPUT_DIR
        ("elsewhere/sub/x.wav", "out/x"),
        ("inboxed/x.wav", "out/x"),  # a sibling whose name starts like WATCH_DIR is outside it
    ],
)  # fmt: skip
def test_output_stem(tmp_path: Path, file_path: str, expected: str) -> None:
    stem = output_stem(tmp_path / "out", tmp_path / "inbox", str(tmp_path / file_path))
    assert stem == tmp_path / expected


def test_output_stem_with_relative_folders(tmp_path: Path) -> None:
    # The autouse fixture works in tmp_path: relative WATCH_DIR and file paths resolve against it.
    assert output_stem(Path("out"), Path("inbox"), str(tmp_path / "inbox" / "sub" / "a.wav")) == Path("out/sub/a")


def test_write_outputs_writes_each_format_beside_the_stem(tmp_path: Path) -> None:
    stem = tmp_path / "out" / "sub" / "Call recording +1 813"
    written = write_outputs(DOC, stem, ["txt", "srt", "vtt", "json"])
    names = ["Call recording +1 813.txt", "Call recording +1 813.srt", "Call recording +1 813.vtt",
             "Call recording +1 813.json"]  # fmt: skip
    assert written == [stem.parent / name for name in names]
    for path in written:
        assert path.read_text(encoding="utf-8") == RENDERERS[path.suffix[1:]](DOC)
    assert sorted(os.listdir(stem.parent)) == sorted(names)  # no temp file left behind


def test_write_outputs_only_the_formats_asked(tmp_path: Path) -> None:
    write_outputs(DOC, tmp_path / "a", ["srt"])
    assert os.listdir(tmp_path) == ["a.srt"]


def test_write_atomic_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old and much longer content\n", encoding="utf-8")
    write_atomic(path, "new\n")
    assert path.read_text(encoding="utf-8") == "new\n"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_write_atomic_keeps_the_old_file_and_no_temp_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old\n", encoding="utf-8")

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", dst)

    monkeypatch.setattr("transcriber.outputs.os.replace", refuse)
    with pytest.raises(PermissionError):
        write_atomic(path, "new\n")
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == "old\n"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_write_atomic_writes_utf8_with_unix_newlines(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "a.txt"  # missing folders are created
    write_atomic(path, "señor\nline two\n")
    assert path.read_bytes() == "señor\nline two\n".encode()


CALL = TranscriptDoc(
    source="Call recording +18134353769_200301_171119.m4a",
    segments=[
        Segment(0.0, 2.0, " My card is four one one one, one one one one,", words=((0.0, 0.4, " My", 0.9),)),
        Segment(2.0, 4.0, " one one one one, one one one one. Call 813-435-3769.", words=((2.0, 2.4, " one", 0.9),)),
        Segment(4.0, 5.0, " Thanks, John.", words=((4.0, 4.4, " Thanks", 0.9),)),
    ],
    language="en",
    duration=5.0,
    model="tiny.en",
    call={"phone_number": "+18134353769", "contact": "John Doe"},
)


def test_write_outputs_redacted_copies_beside_the_originals(tmp_path: Path) -> None:
    stem = tmp_path / "Call recording +18134353769_200301_171119"
    written = write_outputs(CALL, stem, ["txt", "json"], redact="numbers")
    assert [p.name for p in written] == [f"{stem.name}.txt", f"{stem.name}.json", f"{stem.name}.redacted.txt",
                                         f"{stem.name}.redacted.json"]  # fmt: skip
    assert (tmp_path / f"{stem.name}.txt").read_text(encoding="utf-8") == RENDERERS["txt"](CALL)  # untouched
    assert (tmp_path / f"{stem.name}.json").read_text(encoding="utf-8") == RENDERERS["json"](CALL)
    assert (tmp_path / f"{stem.name}.redacted.txt").read_text(encoding="utf-8") == (
        "My card is [card]\n[card]. Call [phone].\nThanks, John.\n"
    )
    body = (tmp_path / f"{stem.name}.redacted.json").read_text(encoding="utf-8")
    for raw in ("one one", "4111", "8134353769", "435-3769"):
        assert raw not in body  # not in segments, words, the text, the source or the call's facts
    data = json.loads(body)
    assert data["text"] == "My card is [card] [card]. Call [phone]. Thanks, John."
    assert [s.get("words") for s in data["segments"]] == [None, None, [{"start": 4.0, "end": 4.4, "word": " Thanks",
                                                                        "probability": 0.9}]]  # fmt: skip
    assert data["call"] == {"phone_number": "[phone]", "contact": "John Doe"}  # the name only at "all"


def test_redacted_document_at_all_masks_the_contact(tmp_path: Path) -> None:
    doc = redacted_document(CALL, "all")
    assert doc.call == {"phone_number": "[phone]", "contact": "[name]"}
    assert "John Doe" not in doc.source and "8134353769" not in doc.source
    assert redacted_document(CALL, "off") is CALL


def test_write_outputs_without_redact_writes_only_the_originals(tmp_path: Path) -> None:
    write_outputs(CALL, tmp_path / "a", ["txt"], redact="off")
    assert os.listdir(tmp_path) == ["a.txt"]
