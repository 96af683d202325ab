"""Nothing said is lost: a call of several minutes of real recorded voices, with pauses, a quiet hold
section and a number read back four times, comes out with every sentence, through the real pipeline,
whole in one attempt and resumed over several attempts under a short time limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speech import Said, real_voice_call, sentences_missing, silence, speak, write_audio

pytestmark = pytest.mark.slow

NUMBER = "The reference is printed on the back of the card."


def build_call(shared_audio: Path) -> tuple[np.ndarray, list[Said]]:
    """Four minutes of the shared voices, then the caller reads the number back four times (a real
    repeat, which the main pass drops as a loop and the repair restores), then more of the voices."""
    first, said = real_voice_call(shared_audio, 150, seed=3, hold=20.0)
    number = speak(NUMBER)
    at = len(first) / 16000
    parts, readings = [first], []
    for _ in range(4):
        readings.append(Said(at, at + len(number) / 16000, NUMBER))
        parts += [number, silence(0.8)]
        at += len(number) / 16000 + 0.8
    rest, said_rest = real_voice_call(shared_audio, 80, seed=4, hold=0.0)
    later = [Said(s.start + at, s.end + at, s.text) for s in said_rest]
    return np.concatenate([*parts, rest]), said + readings + later


def test_every_sentence_of_a_long_call_is_heard_whole_and_resumed(pipeline, shared_audio: Path) -> None:
    samples, said = build_call(shared_audio)
    assert len(samples) / 16000 > 240 and len(said) > 30
    write_audio(pipeline.watch_dir / "Call recording +18134353769_200301_171119.m4a", samples)
    worker = pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("the whole call", lambda: pipeline.all_settled(1), timeout=300)

    # The same call again (as .wav: other bytes), under a time limit far shorter than the call takes.
    pipeline.kill(worker)
    write_audio(pipeline.watch_dir / "resumed.wav", samples)
    pipeline.start("worker", "--pool=solo", TASK_TIMEOUT_SECONDS="6", TASK_MAX_RETRIES="40")
    pipeline.wait_for("the resumed call", lambda: pipeline.all_settled(2), timeout=400)

    rows = {
        r[0]: r[1:]
        for r in pipeline.query(
            "SELECT file_name, status, speech_seconds, uncovered_seconds, needs_review, review_reasons,"
            " words_per_minute, retry_count, id FROM recordings"
        )
    }
    whole, resumed = rows["Call recording +18134353769_200301_171119.m4a"], rows["resumed.wav"]
    assert whole[0] == resumed[0] == "completed", rows
    assert resumed[6] >= 2, "the limit should have cut the call into several attempts"
    for name, row in rows.items():
        segments = pipeline.query(
            'SELECT start, "end", text FROM segments WHERE recording_id = :id ORDER BY start', id=row[7]
        )

        class Seg:  # what sentences_missing reads
            def __init__(self, start: float, end: float, text: str) -> None:
                self.start, self.end, self.text = start, end, text

        missing = sentences_missing(said, [Seg(*s) for s in segments])
        near = [s for s in segments for m in missing if s[1] > m.start - 5 and s[0] < m.end + 5]
        attempts = pipeline.query(
            "SELECT outcome, audio_start_seconds, audio_end_seconds FROM attempts WHERE recording_id = :id"
            " ORDER BY attempt",
            id=row[7],
        )
        assert not missing, f"{name}: sentences without text: {missing}; segments near: {near}; attempts: {attempts}"
        speech, uncovered, review = row[1], row[2], row[3]
        assert speech > 120 and uncovered is not None and uncovered < 3.0 and review is False, (name, row)

    # Quality figures of the resumed call cover the whole call, as those of the uninterrupted one do.
    assert resumed[1] == pytest.approx(whole[1], rel=0.03)
    assert resumed[5] == pytest.approx(whole[5], rel=0.1)
    doc = json.loads((pipeline.output_dir / "Call recording +18134353769_200301_171119.json").read_text())
    assert doc["coverage"]["speech_seconds"] == whole[1] and doc["coverage"]["uncovered_seconds"] == whole[2]
