"""Faults caused for real: a crash loop, two workers and two beats at once, a pickled message."""

from __future__ import annotations

import threading
import time

import psutil
import pytest
from kombu import Connection, Exchange, Producer

from speech import SENTENCES, conversation, keyed_call, write_audio

pytestmark = pytest.mark.slow


def test_a_recording_that_kills_its_worker_every_time_ends_failed_with_the_cause(pipeline) -> None:
    """An OOM-like crash loop: the model process dies mid-call on every attempt."""
    audio, _ = keyed_call(8)
    write_audio(pipeline.watch_dir / "killer.m4a", audio)
    worker = pipeline.start("worker", "--pool=solo", TASK_MAX_RETRIES="2")
    pipeline.start("beat", TASK_MAX_RETRIES="2")
    pipeline.start("watch")
    stop = threading.Event()

    def oom_killer() -> None:  # kill the model process whenever it is transcribing
        while not stop.is_set():
            if pipeline.query("SELECT 1 FROM recordings WHERE status = 'processing'"):
                for child in psutil.Process(worker.pid).children(recursive=True):
                    if "transcriber.model_process" in " ".join(child.cmdline()):
                        child.kill()
            time.sleep(0.2)

    killer = threading.Thread(target=oom_killer, daemon=True)
    killer.start()
    try:
        pipeline.wait_for("the recording to fail", lambda: pipeline.all_settled(1), timeout=180)
    finally:
        stop.set()
        killer.join()
    [(status, retries, error, _)] = pipeline.statuses().values()
    assert (status, retries) == ("failed", 2)
    assert error.startswith("Max retries exceeded (2): Worker lost: model process exited with code -9")
    assert [a[0] for a in pipeline.query("SELECT outcome FROM attempts ORDER BY attempt")] == ["lost"] * 3
    assert worker.poll() is None  # the worker itself carried on


def test_two_workers_and_two_beats_transcribe_each_recording_once(pipeline) -> None:
    for n, sentence in enumerate(SENTENCES):
        write_audio(pipeline.watch_dir / f"call {n}.m4a", conversation([sentence]))
    for _ in range(2):
        pipeline.start("worker", "--pool=solo", WHISPER_CPU_THREADS="1")
        pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("six calls", lambda: pipeline.all_settled(6), timeout=180)
    assert {s[0] for s in pipeline.statuses().values()} == {"completed"}
    runs = pipeline.query("SELECT recording_id, count(*), min(worker), max(worker) FROM attempts GROUP BY recording_id")
    assert len(runs) == 6 and all(count == 1 for _, count, _, _ in runs)  # no recording ran twice
    assert len({w for _, _, lo, hi in runs for w in (lo, hi)}) == 2  # both workers took work


def test_a_pickled_message_is_refused(pipeline, redis_url: str) -> None:
    write_audio(pipeline.watch_dir / "ok.m4a", conversation(SENTENCES[:1]))
    pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("the good call", lambda: pipeline.all_settled(1))
    with Connection(redis_url) as conn:  # what an attacker with access to Redis would send
        Producer(conn).publish(
            {"task": "transcriber.transcribe", "id": "evil", "args": ["x"], "kwargs": {}},
            exchange=Exchange("transcriber", type="direct"),
            routing_key="transcriber",
            serializer="pickle",
            headers={"task": "transcriber.transcribe", "id": "evil"},
        )
    pipeline.wait_for("the refusal in the log", lambda: "pickle" in pipeline.full_log("worker").lower())
    log = pipeline.full_log("worker")
    assert "Refusing to deserialize untrusted content of type pickle" in log or "ContentDisallowed" in log
    assert "Task transcriber.transcribe[evil]" not in log
