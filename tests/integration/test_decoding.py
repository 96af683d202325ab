"""The decode path with the real tiny.en model in this process: the repair restores speech the main pass
left without text, on one channel and per side, resumed, and with the batched pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from speech import SENTENCES, silence, speak
from transcriber.decoding import decode
from transcriber.model_store import resolve_model
from transcriber.segments import Segment

pytestmark = pytest.mark.slow

OPTIONS: dict[str, Any] = {"beam_size": 5, "vad_filter": True, "condition_on_previous_text": False}
REPEATED = "My account number is four two seven one."


@pytest.fixture(scope="module")
def model() -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(resolve_model("tiny.en", None), device="cpu", compute_type="int8", cpu_threads=2)


@pytest.fixture(scope="module")
def read_back() -> np.ndarray:
    """A caller reads the account number back four times: the same words four times in a row, for real.

    The main pass drops a text heard a third time in a row (a loop); here that drops real speech."""
    number = speak(REPEATED)
    return np.concatenate([speak(SENTENCES[0]), silence(1.0)] + [number, silence(0.8)] * 4 + [speak(SENTENCES[1])])


def run(model: Any, sides: Sequence[np.ndarray], **options: Any) -> tuple[list[Segment], Any]:
    out: list[Segment] = []
    summary = decode(model, sides, {**OPTIONS, **options}, out.append)
    return sorted(out, key=lambda s: s.start), summary


def times_said(segments: Sequence[Segment]) -> int:
    return " ".join(s.text for s in segments).lower().replace(",", "").count("number is")


def test_the_repair_restores_speech_the_main_pass_dropped(model: Any, read_back: np.ndarray) -> None:
    without, _ = run(model, [read_back], repair=False)
    assert times_said(without) == 2  # the cause, for real: the third and fourth reading were dropped as a loop
    repaired, summary = run(model, [read_back])
    assert times_said(repaired) == 4 and summary.repaired >= 1
    text = " ".join(s.text for s in repaired).lower()
    assert "quarterly invoice" in text and "printer" in text
    assert [s.start for s in repaired] == sorted(s.start for s in repaired)


def test_the_repair_works_with_the_batched_pipeline_and_per_side(model: Any, read_back: np.ndarray) -> None:
    batched, _ = run(model, [read_back], batch_size=4)
    assert times_said(batched) == 4
    other = np.concatenate([silence(len(read_back) / 16000 - 4), speak("Thank you.")])
    per_side, summary = run(model, [read_back, other])
    assert times_said([s for s in per_side if s.speaker == "caller"]) == 4
    assert "thank you" in " ".join(s.text for s in per_side if s.speaker == "callee").lower()
    assert {g.speaker for g in summary.speech} == {"caller", "callee"}


def test_a_resumed_decode_repairs_only_what_no_attempt_saved(model: Any, read_back: np.ndarray) -> None:
    half = len(read_back) / 16000 / 2
    saved = [Segment(0.0, half, " what the earlier attempt heard")]
    out: list[Segment] = []
    decode(model, [read_back], OPTIONS, out.append, start=half, previous=saved)
    assert out and min(s.start for s in out) >= half - 1.0  # nothing decoded again before the resume point
    out.clear()
    decode(model, [read_back], OPTIONS, out.append, start=half)  # nothing saved before it: speech there is uncovered
    assert "quarterly invoice" in " ".join(s.text for s in out).lower()


def test_a_first_piece_is_decoded_on_its_own_and_reported(model: Any, read_back: np.ndarray) -> None:
    reached: list[float] = []
    out: list[Segment] = []
    decode(model, [read_back], OPTIONS, out.append, first_piece=7.5, on_reached=reached.append)
    assert len(reached) == 1 and 2.5 <= reached[0] <= 7.5
    assert times_said(out) == 4 and "quarterly invoice" in " ".join(s.text for s in out).lower()


def test_transcribe_file_reports_coverage_with_no_settings(read_back: np.ndarray, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``transcriber transcribe FILE --format json`` with no .env (run where there is none): the repair runs,
    and the json holds the coverage."""
    import json
    import os
    import subprocess
    import sys

    from speech import write_audio

    audio = write_audio(tmp_path / "read back.m4a", read_back)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHISPER_", "DATABASE_", "CELERY_"))}
    done = subprocess.run(
        [sys.executable, "-m", "transcriber.cli", "transcribe", str(audio), "--format", "json", "--json"],
        env={**env, "WHISPER_MODEL": "tiny.en", "DIARIZE": "off"},  # the repair and coverage, not speaker turns
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert times_said([Segment(0, 1, summary["text"])]) == 4, summary["text"]
    assert summary["text"].rstrip(".").endswith("printer"), summary["text"]  # in time order, repairs included
    assert summary["coverage"]["uncovered_seconds"] < 3.0 and "needs review" not in done.stderr
    doc = json.loads((tmp_path / "read back.json").read_text())
    assert doc["coverage"] == summary["coverage"] and doc["coverage"]["speech_seconds"] > 15
