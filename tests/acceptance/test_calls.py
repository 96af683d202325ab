"""Call-aware transcripts through the real pipeline: two-channel calls by speaker, no invented text on
silence or tone, truncated files never passed off as complete, quality figures and word timings."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from speech import SENTENCES, long_speech, silence, speak, tone, write_audio

pytestmark = pytest.mark.slow


def test_calls_are_transcribed_as_calls(pipeline, shared_audio: Path, tmp_path: Path) -> None:
    inbox = pipeline.watch_dir
    # A two-channel recorder: a different voice on each side, taking turns.
    first, second, third = speak(SENTENCES[0]), speak(SENTENCES[1], voice="en-gb", pitch=20), speak(SENTENCES[2])
    caller = np.concatenate([first, silence(len(second) / 16000 + 0.5), third])
    callee = np.concatenate([silence(len(first) / 16000 + 0.5), second])
    write_audio(inbox / "two sides.m4a", caller, right=callee)
    shutil.copyfile(shared_audio / "stereo_diarization.wav", inbox / "real stereo.wav")
    write_audio(inbox / "silence.m4a", silence(60))
    write_audio(inbox / "hold music.m4a", tone(60))
    write_audio(inbox / "pause.m4a", np.concatenate([speak(SENTENCES[3]), silence(20), speak(SENTENCES[4])]))
    truncated = write_audio(tmp_path / "truncated.m4a", long_speech(120), faststart=True)
    (inbox / "truncated.m4a").write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])

    pipeline.start("worker", "--pool=solo", WHISPER_WORD_TIMESTAMPS="true")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("six calls", lambda: pipeline.all_settled(6), timeout=240)
    status = pipeline.statuses()

    def segments(name: str) -> list[tuple]:
        return [
            tuple(r)
            for r in pipeline.query(
                'SELECT s.speaker, s.text, s.start, s."end" FROM segments s JOIN recordings r ON r.id = s.recording_id '
                "WHERE r.file_name = :n ORDER BY s.idx",
                n=name,
            )
        ]

    # Each sentence lands with its speaker, in the order spoken.
    said = [(speaker, text.lower()) for speaker, text, _, _ in segments("two sides.m4a")]
    assert [s for s, _ in said] == ["caller", "callee", "caller"]
    assert "quarterly invoice" in said[0][1] and "printer" in said[1][1] and "weekend" in said[2][1]
    assert status["two sides.m4a"][3].startswith("caller: The quarterly invoice")
    # Real speech, one speaker per channel: word for word per side (mixed, tiny.en turns it into nonsense).
    real = {speaker: text.lower() for speaker, text, _, _ in segments("real stereo.wav")}
    assert "confused complaint against the wizard" in real["caller"]
    assert "horizon seems extremely distant" in real["callee"]
    vtt = (pipeline.output_dir / "two sides.vtt").read_text()
    assert "<v caller>The quarterly invoice" in vtt and "<v callee>Please call me back" in vtt

    # Nothing where nothing was said, and nothing lost where something was.
    assert status["silence.m4a"][:4] == ("completed", 0, None, "")
    assert status["hold music.m4a"][0] == "completed" and status["hold music.m4a"][3] == ""
    pause = segments("pause.m4a")
    spoken = " ".join(text for _, text, _, _ in pause).lower()
    assert "technician" in spoken and "pickup" in spoken
    first_end = len(speak(SENTENCES[3])) / 16000
    assert not [s for s in pause if s[2] > first_end + 2 and s[3] < first_end + 18]  # no text in the silence

    # A file that decodes to half its stated length is not a short transcript.
    assert status["truncated.m4a"][0:2] == ("failed", 0)
    got, stated = re.match(r"Incomplete decode: got ([\d.]+) of ([\d.]+) min", status["truncated.m4a"][2]).groups()
    assert float(got) < 0.6 * float(stated) and float(stated) == pytest.approx(len(long_speech(120)) / 16000 / 60, 0.05)

    # Quality figures per recording, and word timings in the json.
    [(channels, speech, logprob, wpm, review)] = pipeline.query(
        "SELECT channels, speech_seconds, avg_logprob, words_per_minute, needs_review FROM recordings "
        "WHERE file_name = 'two sides.m4a'"
    )
    assert channels == 2 and speech > 5 and -1.0 < logprob < 0 and 60 < wpm < 260 and review is False
    words = json.loads((pipeline.output_dir / "pause.json").read_text())["segments"][0]["words"]
    assert words[0]["word"].strip().lower() == "the" and words[0]["end"] > words[0]["start"]
