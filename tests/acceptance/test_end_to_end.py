"""A dropped call becomes text: real watcher, worker and beat; real model; real speech."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from speech import SENTENCES, conversation, write_audio

pytestmark = pytest.mark.slow


def test_dropped_files_are_transcribed_and_bad_ones_fail_once(pipeline, shared_audio: Path) -> None:
    pipeline.start("worker", "--concurrency=1")
    pipeline.start("beat")
    pipeline.start("watch")
    inbox = pipeline.watch_dir
    name = "Call recording +18134353769_200301_171119.m4a"
    write_audio(inbox / "2026" / name, conversation(SENTENCES[:2]))
    shutil.copyfile(shared_audio / "jfk.flac", inbox / "jfk.flac")  # a real human voice
    (inbox / "corrupt.m4a").write_bytes(os.urandom(4000))
    (inbox / "notes.txt").write_text("not audio")

    pipeline.wait_for("three recordings to finish", lambda: pipeline.all_settled(3))
    status = pipeline.statuses()
    assert set(status) == {name, "jfk.flac", "corrupt.m4a"}  # the text file is not a recording

    call = status[name]
    assert call[:3] == ("completed", 0, None)
    for word in ("quarterly", "invoice", "customer", "printer"):
        assert word in call[3].lower()
    assert "ask not what your country can do for you" in status["jfk.flac"][3].lower()

    corrupt = status["corrupt.m4a"]
    assert corrupt[0:2] == ("failed", 0)
    assert corrupt[2].startswith("Unreadable audio: ")

    attempts = pipeline.query(
        "SELECT r.file_name, a.attempt, a.outcome, a.error_message FROM attempts a "
        "JOIN recordings r ON r.id = a.recording_id ORDER BY r.file_name"
    )
    assert [(r[0], r[1], r[2]) for r in attempts] == [
        (name, 1, "succeeded"),
        ("corrupt.m4a", 1, "failed"),
        ("jfk.flac", 1, "succeeded"),
    ]
    [duration] = pipeline.query("SELECT duration_seconds FROM recordings WHERE file_name = 'jfk.flac'")
    assert duration[0] == pytest.approx(11.0, abs=0.2)

    # Outputs mirror the subfolder, are named after the file, and carry the segments.
    out = pipeline.output_dir / "2026"
    assert sorted(p.name for p in out.iterdir()) == [
        f"{Path(name).stem}.{ext}" for ext in ("json", "srt", "txt", "vtt")
    ]
    data = json.loads((out / f"{Path(name).stem}.json").read_text())
    assert data["language"] == "en" and data["segments"] and data["model"] == "tiny.en"
    assert (out / f"{Path(name).stem}.srt").read_text().startswith("1\n00:00:0")
    [segments] = pipeline.query(
        "SELECT count(*) FROM segments s JOIN recordings r ON r.id = s.recording_id WHERE r.file_name = :n", n=name
    )
    assert segments[0] == len(data["segments"])

    # The same audio dropped again under another name is the same recording.
    shutil.copyfile(inbox / "2026" / name, inbox / "same audio again.m4a")
    pipeline.wait_for("the duplicate to be logged", lambda: "duplicate" in pipeline.full_log("watch"))
    assert len(pipeline.query("SELECT id FROM recordings")) == 3


def test_model_process_is_recycled_after_max_tasks(pipeline) -> None:
    pipeline.start("worker", "--pool=threads", WORKER_MAX_TASKS="1")
    pipeline.start("beat")
    pipeline.start("watch")
    for n, sentence in enumerate(SENTENCES[:3]):
        write_audio(pipeline.watch_dir / f"call {n}.m4a", conversation([sentence]))
    pipeline.wait_for("three calls", lambda: pipeline.all_settled(3))
    assert {s[0] for s in pipeline.statuses().values()} == {"completed"}
    logs = pipeline.full_log("worker")
    assert logs.count("recycling the model process: 1 tasks served (WORKER_MAX_TASKS=1)") == 3
    loaded = [line.rsplit("(pid ", 1)[1].rstrip(")") for line in logs.splitlines() if "loaded in" in line]
    assert len(set(loaded)) == 3  # a fresh model process for each task
