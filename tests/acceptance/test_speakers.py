"""Who said what on a mono call, through the real pipeline: two voices taking turns come out with their
speakers in the segments table, the outputs and ``status``, with the worker SIGKILLed mid-call and the call
resumed by the next one (the turns are found once, over the whole call, so both halves agree)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from speech import write_audio
from two_voices import truth_spans, two_voice_call, words_right

pytestmark = pytest.mark.slow

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")
NAME = "Call recording +18134353769_200301_171119.m4a"


def test_a_mono_call_gets_its_speakers_across_a_worker_kill(pipeline) -> None:
    samples, lines = two_voice_call(100, seed=5)
    write_audio(pipeline.watch_dir / NAME, samples)
    speakers = {"DIARIZE": "auto", "DIARIZE_LABELS": "agent,customer"}
    worker = pipeline.start("worker", "--pool=solo", **speakers)
    pipeline.start("beat")
    pipeline.start("watch")

    def some_saved() -> bool:
        return bool(pipeline.query("SELECT 1 FROM recordings WHERE status = 'processing' AND progress_seconds > 0"))

    pipeline.wait_for("progress saved", some_saved, timeout=120)
    pipeline.kill(worker)  # mid-call: the next attempt resumes, and finds the turns of the whole call
    pipeline.start("worker", "--pool=solo", **speakers)
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1), timeout=400)

    [(rid, status, turns, stats, review, reasons, error)] = pipeline.query(
        "SELECT id, status, speaker_turns, speaker_stats, needs_review, review_reasons, speaker_error FROM recordings"
    )
    attempts = pipeline.query("SELECT outcome, audio_start_seconds FROM attempts ORDER BY attempt")
    assert status == "completed" and [a[0] for a in attempts] == ["lost", "succeeded"], attempts
    resumed_at = attempts[1][1]
    assert 0 < resumed_at < len(samples) / 16000 - 30, attempts
    assert turns and error is None and review is False, (reasons, error)

    segments = pipeline.query('SELECT start, "end", speaker, words FROM segments WHERE recording_id = :id', id=rid)
    assert {s[2] for s in segments} == {"agent", "customer"}
    said = [(w[0], w[1], w[2], s[2]) for s in segments for w in json.loads(s[3] or "[]")]
    reference = truth_spans(lines)
    for part in ([w for w in said if w[1] <= resumed_at], [w for w in said if w[0] >= resumed_at]):
        right = words_right(part, reference)  # the same names on both sides of the resume point
        assert right["share"] >= 0.9 and right["mapping"] == {"agent": 0, "customer": 1}, right

    figures = json.loads(stats)
    assert [s["speaker"] for s in figures["speakers"]] == ["agent", "customer"]
    assert sum(s["share"] for s in figures["speakers"]) == pytest.approx(1.0, abs=0.01)
    doc = json.loads((pipeline.output_dir / NAME.replace(".m4a", ".json")).read_text())
    assert all(s["speaker"] in ("agent", "customer") for s in doc["segments"]) and doc["speakers"] == figures
    assert doc["call"] == {"phone_number": "+18134353769", "call_started_at": "2020-03-01T17:11:19+00:00"}
    txt = (pipeline.output_dir / NAME.replace(".m4a", ".txt")).read_text().splitlines()
    assert txt and all(line.startswith(("agent: ", "customer: ")) for line in txt)

    shown = subprocess.run([TRANSCRIBER, "status", str(rid)], capture_output=True, text=True,
                           env=pipeline.env, timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "agent:" in shown.stdout and "customer:" in shown.stdout and "turns" in shown.stdout, shown.stdout
    assert "call      +18134353769, 2020-03-01 17:11:19 UTC" in shown.stdout, shown.stdout
    exported = subprocess.run([TRANSCRIBER, "export", str(rid), "--format", "vtt", "-o", "-"], capture_output=True,
                              text=True, env=pipeline.env, timeout=60)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    cues = [line for line in exported.stdout.splitlines() if line.startswith("<v ")]
    assert cues and all(line.startswith(("<v agent>", "<v customer>")) for line in cues)


def test_a_split_mono_call_has_one_set_of_speakers_over_all_its_pieces(pipeline) -> None:
    samples, lines = two_voice_call(100, seed=5)
    write_audio(pipeline.watch_dir / NAME, samples)
    settings = {"DIARIZE": "auto", "DIARIZE_LABELS": "agent,customer", "SPLIT_MIN_SECONDS": "60",
                "SPLIT_TARGET_SECONDS": "30", "WHISPER_CPU_THREADS": "1"}  # fmt: skip
    for name in ("worker-a", "worker-b"):
        pipeline.start("worker", "--pool=solo", f"--hostname={name}@%h", **settings)
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1), timeout=400)
    [(rid, status, turns, error)] = pipeline.query("SELECT id, status, speaker_turns, speaker_error FROM recordings")
    assert status == "completed" and turns and error is None, error
    assert len(pipeline.query("SELECT 1 FROM attempts WHERE piece IS NOT NULL")) >= 3
    segments = pipeline.query("SELECT speaker, words FROM segments WHERE recording_id = :id", id=rid)
    said = [(w[0], w[1], w[2], s[0]) for s in segments for w in json.loads(s[1] or "[]")]
    right = words_right(said, truth_spans(lines))  # one mapping over the whole call: the pieces agree
    assert right["share"] >= 0.9 and right["mapping"] == {"agent": 0, "customer": 1}, right
