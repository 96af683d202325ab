"""Faults caused for real: a crash loop, two workers and two beats at once, a pickled message."""

from __future__ import annotations

import threading
import time

import psutil
import pytest
from kombu import Connection, Exchange, Producer

from speech import SENTENCES, conversation, keyed_call, long_speech, write_audio

pytestmark = pytest.mark.slow


def test_a_recording_that_kills_its_worker_every_time_ends_failed_with_the_cause(pipeline) -> None:
    """An OOM-like crash loop: the model process dies mid-call on every attempt."""
    audio, _ = keyed_call(20)  # 97 s: seconds of work per attempt, many polls of the killer below
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
    refusals = ("Refusing to deserialize untrusted content of type pickle", "ContentDisallowed")
    # The refusal itself: the log's paths hold the test's name, "pickle" among its words.
    pipeline.wait_for("the refusal in the log", lambda: any(r in pipeline.full_log("worker") for r in refusals))
    log = pipeline.full_log("worker")
    assert "Task transcriber.transcribe[evil]" not in log


def test_rescue_runs_while_every_worker_is_busy(pipeline) -> None:
    """Beat rescues a dead worker's recording even though the only worker is busy with a long call."""
    from datetime import UTC, datetime, timedelta

    from transcriber import lifecycle
    from transcriber.db import transaction

    write_audio(pipeline.watch_dir / "long.m4a", long_speech(300))
    pipeline.start("worker", "--pool=solo", WHISPER_CPU_THREADS="1")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for(
        "the worker to be busy", lambda: pipeline.query("SELECT 1 FROM recordings WHERE status='processing'")
    )
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with transaction(pipeline.sessions) as s:  # a recording whose worker died an hour ago on another machine
        ghost, _ = lifecycle.register_recording(
            s, file_path="/gone/ghost.m4a", file_name="ghost.m4a", file_size=1, content_sha256="f" * 64,
            now=an_hour_ago,
        )  # fmt: skip
    with transaction(pipeline.sessions) as s:
        lifecycle.claim_recording(s, recording_id=ghost.id, task_id="dead", worker="gone:1", now=an_hour_ago)
    pipeline.wait_for("the rescue", lambda: pipeline.query("SELECT 1 FROM attempts WHERE outcome = 'lost'"), timeout=60)
    assert pipeline.query("SELECT status FROM recordings WHERE file_name = 'long.m4a'") == [("processing",)]
    [(error,)] = pipeline.query("SELECT error_message FROM attempts WHERE outcome = 'lost'")
    assert error.startswith("Worker lost: no heartbeat for 3")


def test_the_watcher_waits_for_its_database(pipeline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Started before the database exists (a server that boots later), it retries, then works."""
    from sqlalchemy import create_engine, text

    from transcriber.migrate import upgrade_to_head

    admin_url = pipeline.env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    late_db = pipeline.env["DATABASE_URL"] + "_late"
    write_audio(pipeline.watch_dir / "early call.m4a", conversation(SENTENCES[:1]))
    watcher = pipeline.start("watch", DATABASE_URL=late_db)
    pipeline.wait_for("the retry log line", lambda: "database not ready" in pipeline.full_log("watch"))
    assert watcher.poll() is None  # still waiting, not dead
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{late_db.rsplit("/", 1)[1]}"'))
    try:
        upgrade_to_head(late_db)
        engine = create_engine(late_db)

        def registered() -> list:  # type: ignore[type-arg]
            with engine.connect() as conn:
                return conn.execute(text("SELECT file_name FROM recordings")).all()

        pipeline.wait_for("the file to be registered", registered, timeout=60)
        engine.dispose()
    finally:
        pipeline.kill(watcher)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{late_db.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()
