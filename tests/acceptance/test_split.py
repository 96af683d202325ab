"""A long call cut into pieces, fanned out over two real workers and merged: every sentence once, in order."""

from __future__ import annotations

import re

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


def test_a_worker_killed_mid_piece_costs_that_piece_one_retry(pipeline) -> None:
    audio, keywords = keyed_call()
    for name in ("worker-a", "worker-b"):
        pipeline.start("worker", "--pool=solo", f"--hostname={name}@%h", **SPLIT)
    pipeline.start("beat")
    pipeline.wait_for("two workers", lambda: pipeline.full_log("worker").count("ready.") >= 2)
    pipeline.start("watch")
    write_audio(pipeline.watch_dir / "long call.m4a", audio)

    def two_pieces_running() -> list:
        return pipeline.query("SELECT worker FROM attempts WHERE outcome = 'running' AND piece IS NOT NULL") if len(
            pipeline.query("SELECT 1 FROM attempts WHERE outcome = 'running' AND piece IS NOT NULL")
        ) == 2 else []  # fmt: skip

    running = pipeline.wait_for("both workers on a piece", two_pieces_running)
    victim_pid = int(sorted(w for (w,) in running)[-1].split(":")[1])  # the worker's name ends in its pid (solo)
    victim = next(p for cmd, p in pipeline.processes if cmd == "worker" and p.pid == victim_pid)
    pipeline.kill(victim)
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1), timeout=240)

    [(status, retries, error, transcript)] = pipeline.query(
        "SELECT status, retry_count, error_message, transcript FROM recordings"
    )
    assert status == "completed" and retries == 1  # the killed piece's retry, and only that
    assert keywords_in_order_once(transcript, keywords) == []
    lost = pipeline.query("SELECT piece, error_message FROM attempts WHERE outcome = 'lost'")
    assert len(lost) == 1 and lost[0][1].startswith("Worker lost: no heartbeat")
    assert pipeline.query("SELECT count(*) FROM attempts WHERE piece = :p AND outcome = 'succeeded'",
                          p=lost[0][0]) == [(1,)]  # fmt: skip


def test_a_truncated_long_call_fails_with_the_piece_and_its_cause(pipeline, tmp_path) -> None:
    audio, _ = keyed_call()
    whole = write_audio(tmp_path / "whole.m4a", audio, faststart=True)  # the index up front: the full duration
    (pipeline.watch_dir / "cut short.m4a").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    pipeline.start("worker", "--pool=solo", **SPLIT)
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1), timeout=240)
    [(status, error, transcript)] = pipeline.query("SELECT status, error_message, transcript FROM recordings")
    assert status == "failed" and transcript is None  # never passed off as complete
    assert error.startswith("Piece ") and "Incomplete decode" in error, error
    assert pipeline.query("SELECT count(*) FROM pieces WHERE status = 'failed'") == [(1,)]


def test_a_two_channel_call_keeps_its_sides_across_pieces(pipeline) -> None:
    from speech import KEYED_SENTENCES, silence, speak

    left, right, keywords = [], [], []
    for i, (words, sentence) in enumerate(KEYED_SENTENCES):
        voice = speak(sentence) if i % 2 == 0 else speak(sentence, voice="en-gb", pitch=20)
        quiet = silence(len(voice) / 16000)
        left += [voice if i % 2 == 0 else quiet, silence(0.7)]
        right += [quiet if i % 2 == 0 else voice, silence(0.7)]
        keywords.append(words)
    import numpy as np

    write_audio(pipeline.watch_dir / "two sides.m4a", np.concatenate(left), right=np.concatenate(right))
    for name in ("worker-a", "worker-b"):
        pipeline.start("worker", "--pool=solo", f"--hostname={name}@%h", **SPLIT)
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1), timeout=240)
    [(status, channels, transcript)] = pipeline.query("SELECT status, channels, transcript FROM recordings")
    assert (status, channels) == ("completed", 2)
    assert keywords_in_order_once(transcript, keywords) == []
    assert len(pipeline.query("SELECT 1 FROM attempts WHERE piece IS NOT NULL")) >= 3
    said = pipeline.query("SELECT speaker, text FROM segments ORDER BY start")
    for words, speaker in zip(keywords, ["caller", "callee"] * 10, strict=True):
        hits = {who for who, text in said if set(words.split("|")) & set(re.findall(r"[a-z]+", text.lower()))}
        assert hits == {speaker}, (words, said)


def test_models_are_loaded_before_the_first_file(pipeline) -> None:
    """A threads worker loads one model per thread when it starts, and the first files use those, not new ones."""
    import psutil

    from speech import SENTENCES, speak

    worker = pipeline.start("worker", "--pool=threads", "--concurrency=2", WHISPER_CPU_THREADS="1")
    pipeline.wait_for("two models loaded, no file yet", lambda: pipeline.full_log("worker").count(" loaded in ") == 2)
    pipeline.start("beat")
    pipeline.start("watch")
    for i in range(2):
        write_audio(pipeline.watch_dir / f"short {i}.m4a", speak(SENTENCES[i]))
    pipeline.wait_for("both calls", lambda: pipeline.all_settled(2))
    assert {r[0] for r in pipeline.statuses().values()} == {"completed"}
    assert pipeline.full_log("worker").count(" loaded in ") == 2  # no third model for the first files
    models = [p for p in psutil.Process(worker.pid).children(recursive=True)
              if "transcriber.model_process" in " ".join(p.cmdline())]  # fmt: skip
    assert len(models) == 2
