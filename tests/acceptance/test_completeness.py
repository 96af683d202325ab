"""Nothing said is lost: a call of several minutes of real recorded voices, with pauses, a quiet hold
section and a reference read back four times, comes out with every sentence through the real pipeline,
with its worker SIGKILLed mid-call and the call resumed by the next one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speech import Said, real_voice_call, sentences_missing, silence, speak, write_audio
from transcriber.audio import decode
from transcriber.coverage import speech_spans, total

pytestmark = pytest.mark.slow

READ_BACK = "The reference is printed on the back of the card."
NAME = "Call recording +18134353769_200301_171119.m4a"


def build_call(shared_audio: Path) -> tuple[np.ndarray, list[Said]]:
    """Two and a half minutes of the shared voices (with a 20-s quiet hold), the reference read back four
    times (a real repeat: the main pass drops the third and fourth as a loop), then more of the voices."""
    first, said = real_voice_call(shared_audio, 150, seed=3, hold=20.0)
    number = speak(READ_BACK)
    at = len(first) / 16000
    parts = [first]
    for _ in range(4):
        said.append(Said(at, at + len(number) / 16000, READ_BACK))
        parts += [number, silence(0.8)]
        at += len(number) / 16000 + 0.8
    rest, said_rest = real_voice_call(shared_audio, 80, seed=4, hold=0.0)
    said += [Said(s.start + at, s.end + at, s.text) for s in said_rest]
    return np.concatenate([*parts, rest]), said


class Seg:
    def __init__(self, start: float, end: float, text: str) -> None:
        self.start, self.end, self.text = start, end, text


def test_every_sentence_of_a_long_call_is_heard_across_a_worker_kill(pipeline, shared_audio: Path) -> None:
    samples, said = build_call(shared_audio)
    assert len(samples) / 16000 > 240 and len(said) > 30
    path = write_audio(pipeline.watch_dir / NAME, samples)
    worker = pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")
    pipeline.start("watch")

    def some_saved() -> bool:  # the first heartbeat that saved segments, well before the end of the call
        return bool(pipeline.query("SELECT 1 FROM recordings WHERE status = 'processing' AND progress_seconds > 0"))

    pipeline.wait_for("progress saved", some_saved, timeout=120)
    pipeline.kill(worker)  # SIGKILL mid-call: the rescue requeues it and the next worker resumes
    pipeline.start("worker", "--pool=solo")
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1), timeout=400)

    [(rid, status, speech, uncovered, review, reasons, wpm)] = pipeline.query(
        "SELECT id, status, speech_seconds, uncovered_seconds, needs_review, review_reasons, words_per_minute"
        " FROM recordings"
    )
    attempts = pipeline.query("SELECT outcome, audio_start_seconds, audio_end_seconds FROM attempts ORDER BY attempt")
    assert status == "completed" and [a[0] for a in attempts] == ["lost", "succeeded"], attempts
    assert 0 < attempts[1][1] < len(samples) / 16000 - 60, attempts  # the second attempt resumed mid-call
    segments = pipeline.query('SELECT start, "end", text FROM segments WHERE recording_id = :id', id=rid)
    missing = sentences_missing(said, [Seg(*s) for s in segments])
    near = [s for s in segments for m in missing if s[1] > m.start - 5 and s[0] < m.end + 5]
    assert not missing, f"sentences without text: {missing}; segments near: {near}; attempts: {attempts}"
    assert uncovered is not None and uncovered < 3.0 and review is False, (uncovered, reasons)

    # The quality figures cover the whole call, not the last attempt: all the speech VAD finds in the file,
    # and every word of every attempt over it.
    assert speech == pytest.approx(total(speech_spans(decode(str(path)))), abs=0.05)
    words = sum(len(s[2].split()) for s in segments)
    assert wpm == pytest.approx(words / (speech / 60), abs=0.1) and 100 < wpm < 260
    doc = json.loads((pipeline.output_dir / NAME.replace(".m4a", ".json")).read_text())
    assert doc["coverage"]["speech_seconds"] == speech and doc["coverage"]["uncovered_seconds"] == uncovered
