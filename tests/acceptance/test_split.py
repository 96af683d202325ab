"""A long call cut into pieces, fanned out over two real workers and merged: every sentence once, in order."""

from __future__ import annotations

import pytest

from speech import keyed_call, keywords_in_order_once, write_audio

pytestmark = pytest.mark.slow

SPLIT = {"SPLIT_MIN_SECONDS": "60", "SPLIT_TARGET_SECONDS": "30", "WHISPER_CPU_THREADS": "1"}


def test_a_long_call_is_split_fanned_out_and_merged(pipeline) -> None:
    audio, keywords = keyed_call()  # 20 sentences, about 100 s: cut in about three pieces
    for name in ("worker-a", "worker-b"):
        pipeline.start("worker", "--pool=solo", f"--hostname={name}@%h", **SPLIT)
    pipeline.start("beat")
    pipeline.wait_for("two workers", lambda: pipeline.full_log("worker").count("ready.") >= 2)
    pipeline.start("watch")
    write_audio(pipeline.watch_dir / "long call.m4a", audio)
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1), timeout=240)

    [(status, retries, error, transcript, progress, duration)] = pipeline.query(
        "SELECT status, retry_count, error_message, transcript, progress_seconds, duration_seconds FROM recordings"
    )
    assert (status, retries, error) == ("completed", 0, None)
    assert keywords_in_order_once(transcript, keywords) == []  # nothing lost or doubled at a seam
    assert progress == duration
    pieces = pipeline.query("SELECT piece, worker, outcome, audio_start_seconds, audio_end_seconds FROM attempts "
                            "ORDER BY audio_start_seconds")  # fmt: skip
    assert [p[0] for p in pieces] == list(range(len(pieces))) and len(pieces) >= 3
    assert {p[2] for p in pieces} == {"succeeded"}
    assert len({p[1] for p in pieces}) == 2, pieces  # both workers took pieces
    for (_, _, _, _, end), (_, _, _, start, _) in zip(pieces, pieces[1:], strict=False):
        assert end == pytest.approx(start)  # contiguous: each piece ends where the next begins
    assert pipeline.query("SELECT count(*) FROM pieces") == [(0,)]  # merged
    idx = [r[0] for r in pipeline.query("SELECT s.start FROM segments s ORDER BY s.start")]
    assert idx == sorted(idx) and len(idx) >= 15
    txt = (pipeline.output_dir / "long call.txt").read_text()
    assert keywords_in_order_once(txt, keywords) == []
