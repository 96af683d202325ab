"""Failure paths caused for real: time limits on every pool, SIGKILL mid-call, SQL reset."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from speech import SENTENCES, conversation, keyed_call, keywords_in_order_once, long_speech, write_audio

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def six_minute_call(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Far more audio than a 2-second limit can transcribe in three attempts."""
    return write_audio(tmp_path_factory.mktemp("audio") / "long call.m4a", long_speech(360))


@pytest.mark.parametrize("pool", ["prefork", "solo", "threads"])
def test_time_limit_is_enforced_on_every_pool(pipeline, six_minute_call: Path, pool: str) -> None:
    pipeline.start("worker", f"--pool={pool}", "--concurrency=1", TASK_TIMEOUT_SECONDS="2", TASK_MAX_RETRIES="2")
    pipeline.start("beat", TASK_MAX_RETRIES="2")
    pipeline.start("watch")
    shutil.copyfile(six_minute_call, pipeline.watch_dir / "long call.m4a")

    pipeline.wait_for("the call to fail", lambda: pipeline.all_settled(1), timeout=180)
    [(status, retries, error, _)] = pipeline.statuses().values()
    assert (status, retries) == ("failed", 2)
    assert error == "Max retries exceeded (2): Timeout exceeded: TimeLimitExceeded(2)"
    attempts = pipeline.query(
        "SELECT attempt, outcome, error_message, time_limit_seconds FROM attempts ORDER BY attempt"
    )
    assert [tuple(a) for a in attempts] == [
        (n, "timeout", "Timeout exceeded: TimeLimitExceeded(2)", 2.0) for n in (1, 2, 3)
    ]


def test_sigkilled_worker_is_rescued_and_the_call_completes(pipeline, tmp_path: Path) -> None:
    audio, keywords = keyed_call()
    write_audio(pipeline.watch_dir / "killed mid call.m4a", audio)
    worker = pipeline.start("worker", "--pool=solo", WHISPER_CPU_THREADS="1")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for(
        "some segments to be saved",
        lambda: pipeline.query("SELECT 1 FROM recordings WHERE status = 'processing' AND progress_seconds > 0"),
    )
    pipeline.kill(worker)  # SIGKILL to the worker and its model process: no goodbye, no heartbeat
    pipeline.start("worker", "--pool=solo")  # the service manager starts a new one

    pipeline.wait_for("the rescue", lambda: pipeline.query("SELECT 1 FROM attempts WHERE outcome = 'lost'"), timeout=60)
    pipeline.wait_for("the call to complete", lambda: pipeline.all_settled(1), timeout=180)

    [(status, retries, error, transcript)] = pipeline.statuses().values()
    assert (status, retries, error) == ("completed", 1, None)
    attempts = pipeline.query("SELECT outcome, error_message, audio_start_seconds FROM attempts ORDER BY attempt")
    assert [a[0] for a in attempts] == ["lost", "succeeded"]
    assert attempts[0][1].startswith("Worker lost: no heartbeat for ")
    assert attempts[1][2] > 0  # the second attempt resumed after the saved segments
    assert keywords_in_order_once(transcript, keywords) == []  # every sentence, in order, once
    segments = pipeline.query('SELECT start, "end" FROM segments ORDER BY idx')
    assert all(b[0] >= a[1] - 0.01 for a, b in zip(segments, segments[1:], strict=False))  # no overlap at the seam


def test_sql_reset_retranscribes_failed_recordings_without_restart(pipeline, tmp_path: Path) -> None:
    call = write_audio(tmp_path / "moved away.m4a", conversation(SENTENCES[2:4]))
    shutil.copyfile(call, pipeline.watch_dir / "moved away.m4a")
    pipeline.start("watch", "--once").wait(timeout=60)  # registered and queued, no worker yet
    (pipeline.watch_dir / "moved away.m4a").unlink()  # someone moves the file before it is transcribed
    pipeline.start("worker", "--concurrency=1")
    pipeline.start("beat")
    pipeline.wait_for("the recording to fail", lambda: pipeline.all_settled(1))
    [(status, retries, error, _)] = pipeline.statuses().values()
    assert (status, retries) == ("failed", 0) and error.startswith("File not found: ")

    shutil.copyfile(call, pipeline.watch_dir / "moved away.m4a")  # the operator puts it back
    with pipeline.sessions.begin() as session:
        from sqlalchemy import text

        session.execute(
            text("UPDATE recordings SET status='queued', error_message=NULL, retry_count=0 WHERE status='failed'")
        )
    pipeline.wait_for(
        "the reset recording to complete",
        lambda: pipeline.query("SELECT 1 FROM recordings WHERE status = 'completed'"),
        timeout=60,
    )
    [(status, retries, error, transcript)] = pipeline.statuses().values()
    assert (status, retries, error) == ("completed", 0, None)
    assert "weekend" in transcript.lower() and "technician" in transcript.lower()
    assert [a[0] for a in pipeline.query("SELECT outcome FROM attempts ORDER BY attempt")] == ["failed", "succeeded"]


def test_a_call_longer_than_one_attempt_finishes_across_attempts(pipeline, tmp_path: Path) -> None:
    """Each attempt resumes after the last saved segment, so a long call completes under a short limit."""
    audio, keywords = keyed_call()
    write_audio(pipeline.watch_dir / "long.m4a", audio)
    worker = pipeline.start("worker", "--pool=solo", TASK_TIMEOUT_SECONDS="10", TASK_MAX_RETRIES="10")
    pipeline.start("beat", TASK_MAX_RETRIES="10")
    pipeline.start("watch")
    # The first attempt runs out of time after it has saved progress, whatever the machine's speed: once
    # segments are saved its model process is paused, so the limit (10 s, enough for the first window of
    # audio on a loaded machine) ends it; the next attempt resumes and finishes.
    progress = "SELECT 1 FROM recordings WHERE status = 'processing' AND progress_seconds > 0"
    pipeline.wait_for("progress on the first attempt", lambda: pipeline.query(progress), timeout=180)
    [model] = [
        p for p in psutil.Process(worker.pid).children(recursive=True)
        if "transcriber.model_process" in " ".join(p.cmdline())
    ]  # fmt: skip
    model.suspend()
    if not pipeline.query("SELECT 1 FROM recordings WHERE status = 'processing'"):
        pytest.fail("the call finished before its model process could be paused")
    pipeline.wait_for("the call to finish", lambda: pipeline.all_settled(1), timeout=240)

    [(status, retries, error, transcript)] = pipeline.statuses().values()
    assert (status, error) == ("completed", None)
    attempts = pipeline.query("SELECT outcome, audio_start_seconds, audio_end_seconds FROM attempts ORDER BY attempt")
    outcomes = [a[0] for a in attempts]
    assert outcomes[-1] == "succeeded" and set(outcomes[:-1]) == {"timeout"} and len(outcomes) >= 2
    assert retries == len(outcomes) - 1
    for before, after in zip(attempts, attempts[1:], strict=False):
        assert after[1] == pytest.approx(before[2] or before[1])  # starts where the last one stopped
    segments = pipeline.query('SELECT start, "end" FROM segments ORDER BY idx')
    assert all(b[0] >= a[1] - 0.01 for a, b in zip(segments, segments[1:], strict=False))  # no overlap
    assert keywords_in_order_once(transcript, keywords) == []  # every sentence, in order, once
