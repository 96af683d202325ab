"""Odd files a folder will receive: each gets one clear error_message, and nothing else is disturbed."""

from __future__ import annotations

import os
import re
from pathlib import Path

import av
import numpy as np
import pytest

from speech import SENTENCES, conversation, long_speech, speak, write_audio

pytestmark = pytest.mark.slow


def video_without_audio(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for n in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), n * 10, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_bad_files_fail_once_with_a_clear_cause(pipeline, tmp_path: Path) -> None:
    inbox = pipeline.watch_dir
    # A WAV cut short (a copy that broke off): its header still states the whole call.
    call = long_speech(170)
    whole = write_audio(tmp_path / "cut off.wav", call)
    (inbox / "cut off.wav").write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.4)])
    (inbox / "zero bytes.m4a").write_bytes(b"")
    (inbox / "notes.mp3").write_text("This is a text file, not audio.\n" * 50)
    (inbox / "random.m4a").write_bytes(os.urandom(20000))
    video_without_audio(inbox / "screen capture.mp4")
    write_audio(inbox / "tiny clip.m4a", speak("Yes.")[: int(0.3 * 16000)])
    write_audio(inbox / "good call.m4a", conversation(SENTENCES[:1]))
    pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("seven files", lambda: pipeline.all_settled(7))
    status = pipeline.statuses()

    def failed_with(name: str, prefix: str) -> None:
        state, retries, error, _ = status[name]
        assert (state, retries) == ("failed", 0), (name, status[name])
        assert error.startswith(prefix), (name, error)
        assert "\n" not in error

    failed_with("zero bytes.m4a", "Empty file: ")
    failed_with("notes.mp3", "Unreadable audio: ")
    failed_with("random.m4a", "Unreadable audio: ")
    failed_with("screen capture.mp4", "Unreadable audio: the file has no audio track")
    failed_with("random.m4a", "Unreadable audio: Invalid data found when processing input")
    failed_with("cut off.wav", "Incomplete decode: ")  # not a 1-minute transcript of a 3-minute call
    got, stated = re.match(r"Incomplete decode: got ([\d.]+) of ([\d.]+) min", status["cut off.wav"][2]).groups()
    assert float(stated) == pytest.approx(len(call) / 16000 / 60, abs=0.05)
    assert float(got) == pytest.approx(0.4 * float(stated), abs=0.1)
    assert status["tiny clip.m4a"][:3] == ("completed", 0, None)  # too short to say much, but not an error
    assert status["good call.m4a"][0] == "completed" and "quarterly invoice" in status["good call.m4a"][3].lower()
    # One run each: a file that can never decode is not retried.
    assert pipeline.query("SELECT count(*) FROM attempts")[0][0] == 7


def test_odd_names_and_deep_folders_are_transcribed_like_any_other(pipeline) -> None:
    """Quotes, semicolons, SQL, non-ASCII letters, 200+ characters, twelve folders deep: all just work."""
    names = {
        'it\'s a "quoted" call; DROP TABLE recordings; --.m4a': SENTENCES[0],
        "llamada de José Núñez – café 電話.m4a": SENTENCES[1],
        ("Call recording " + "very long name " * 13).strip() + ".m4a": SENTENCES[2],
        "/".join(f"level {n}" for n in range(12)) + "/deep call.m4a": SENTENCES[3],
    }
    assert len(next(n for n in names if n.startswith("Call recording"))) > 200
    for name, sentence in names.items():
        write_audio(pipeline.watch_dir / name, conversation([sentence]))
    pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("four files", lambda: pipeline.all_settled(4))
    status = pipeline.statuses()
    for name, sentence in names.items():
        state, retries, error, transcript = status[Path(name).name]
        assert (state, retries, error) == ("completed", 0, None), name
        assert sentence.split()[1].lower() in transcript.lower(), name
        output = pipeline.output_dir / Path(name).with_suffix(".txt")  # mirrors the subfolder
        assert sentence.split()[1].lower() in output.read_text(encoding="utf-8").lower(), name
    assert pipeline.query("SELECT count(*) FROM recordings")[0][0] == 4  # the table is still there
