"""Servers that go away under a running pipeline: Redis flushed or restarted, Postgres restarted,
either one down when a worker starts, and a redelivered message. Each test has a server of its own."""

from __future__ import annotations

import time

import pytest
import redis

from speech import SENTENCES, conversation, long_speech, write_audio

pytestmark = pytest.mark.slow

SHORT = {f"short {n}.m4a": SENTENCES[n] for n in range(3)}


def _make_shorts(pipeline):  # type: ignore[no-untyped-def]
    """Speak the short calls now (it takes seconds); returns a function that drops them in at once."""
    staging = pipeline.tmp / "staging"
    for name, sentence in SHORT.items():
        write_audio(staging / name, conversation([sentence]))

    def drop() -> None:
        for name in SHORT:
            (staging / name).rename(pipeline.watch_dir / name)

    return drop


def _processing(pipeline, name: str) -> bool:  # type: ignore[no-untyped-def]
    """The recording is being transcribed and has saved some progress."""
    return bool(
        pipeline.query(
            "SELECT 1 FROM recordings WHERE file_name = :n AND status = 'processing' AND progress_seconds > 0", n=name
        )
    )


def _assert_each_completed_once(pipeline, count: int) -> None:  # type: ignore[no-untyped-def]
    statuses = pipeline.statuses()
    assert len(statuses) == count
    assert {name: s[0] for name, s in statuses.items()} == dict.fromkeys(statuses, "completed")
    for name, sentence in SHORT.items():
        if name in statuses:
            assert sentence.split()[1].lower() in statuses[name][3].lower()
    runs = pipeline.query("SELECT r.file_name, a.outcome FROM attempts a JOIN recordings r ON r.id = a.recording_id")
    assert sorted(runs) == sorted((name, "succeeded") for name in statuses)  # one attempt each, none lost


@pytest.mark.parametrize("how", ["flush", "restart"])
def test_redis_flushed_or_restarted_loses_no_recording(pipeline, private_redis, how: str) -> None:
    """Messages of queued recordings are lost with Redis's data; dispatch sends them again, once."""
    private_redis.start()
    pipeline.env["CELERY_BROKER_URL"] = private_redis.url
    write_audio(pipeline.watch_dir / "long call.m4a", long_speech(150))
    drop_shorts = _make_shorts(pipeline)
    worker = pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("the long call to run", lambda: _processing(pipeline, "long call.m4a"))
    drop_shorts()
    client = redis.Redis.from_url(private_redis.url)
    pipeline.wait_for("three messages waiting", lambda: client.llen("transcriber") == 3)
    client.close()
    if how == "flush":
        redis.Redis.from_url(private_redis.url).flushdb()
    else:
        private_redis.restart()
    pipeline.wait_for("every recording", lambda: pipeline.all_settled(4), timeout=180)
    _assert_each_completed_once(pipeline, 4)
    assert worker.poll() is None
    if how == "restart":
        assert "Connection to broker lost" in pipeline.full_log("worker")


def test_postgres_restarted_mid_run_loses_nothing(pipeline, private_postgres) -> None:
    """The worker keeps transcribing while its heartbeats fail, saves them once Postgres is back."""
    pipeline.use_database(private_postgres.url("transcriber"))
    write_audio(pipeline.watch_dir / "long call.m4a", long_speech(150))
    drop_shorts = _make_shorts(pipeline)
    worker = pipeline.start("worker", "--pool=solo", STUCK_TIMEOUT_SECONDS="60")
    pipeline.start("beat", STUCK_TIMEOUT_SECONDS="60")
    watcher = pipeline.start("watch")
    pipeline.wait_for("the long call to run", lambda: _processing(pipeline, "long call.m4a"))
    private_postgres.stop()
    drop_shorts()  # dropped while the database is down: the watcher registers them later
    time.sleep(4)
    private_postgres.start()
    pipeline.wait_for("every recording", lambda: pipeline.all_settled(4), timeout=180)
    _assert_each_completed_once(pipeline, 4)
    assert worker.poll() is None and watcher.poll() is None
    assert "heartbeat for" in pipeline.full_log("worker")  # failed heartbeats were retried, not fatal
    segments = pipeline.query(
        'SELECT s.idx, s.start, s."end" FROM segments s JOIN recordings r ON r.id = s.recording_id'
        " WHERE r.file_name = 'long call.m4a' ORDER BY s.idx"
    )
    assert [s[0] for s in segments] == list(range(len(segments)))  # nothing saved twice, nothing skipped
    assert all(b[1] >= a[2] - 0.01 for a, b in zip(segments, segments[1:], strict=False))


def test_a_worker_and_a_watcher_started_before_redis_wait_for_it(pipeline, private_redis) -> None:
    pipeline.env["CELERY_BROKER_URL"] = private_redis.url
    write_audio(pipeline.watch_dir / "call.m4a", conversation(SENTENCES[:1]))
    worker = pipeline.start("worker", "--pool=solo")
    watcher = pipeline.start("watch")
    pipeline.wait_for("the retry line", lambda: "Cannot connect to redis" in pipeline.full_log("worker"))
    pipeline.wait_for("the registration", lambda: "could not send recording" in pipeline.full_log("watch"))
    assert pipeline.statuses()["call.m4a"][0] == "queued"  # safe in the database meanwhile
    assert worker.poll() is None and watcher.poll() is None
    private_redis.start()
    pipeline.start("beat")  # its dispatch sends what the watcher could not
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1))
    assert pipeline.statuses()["call.m4a"][0] == "completed"
    assert "Traceback" not in pipeline.full_log("watch")


def test_a_worker_started_before_postgres_waits_for_it(pipeline, private_postgres) -> None:
    pipeline.use_database(private_postgres.url("transcriber"))
    private_postgres.stop()
    write_audio(pipeline.watch_dir / "call.m4a", conversation(SENTENCES[:1]))
    worker = pipeline.start("worker", "--pool=solo")
    watcher = pipeline.start("watch")
    pipeline.wait_for("the retry lines", lambda: "database not ready" in pipeline.full_log("worker"))
    pipeline.wait_for("the watcher's retry line", lambda: "database not ready" in pipeline.full_log("watch"))
    assert worker.poll() is None and watcher.poll() is None
    assert "Traceback" not in pipeline.full_log("worker") + pipeline.full_log("watch")
    private_postgres.start()
    pipeline.start("beat")
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1))
    assert pipeline.statuses()["call.m4a"][0] == "completed"


def test_a_redelivered_message_is_dropped_not_run_twice(pipeline) -> None:
    """Redis hands the running call's message to the second worker after 2 s; it is logged and dropped."""
    write_audio(pipeline.watch_dir / "long call.m4a", long_speech(180))
    for _ in range(2):
        pipeline.start("worker", "--pool=solo", WHISPER_CPU_THREADS="1", BROKER_VISIBILITY_TIMEOUT_SECONDS="2")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for(
        "the redelivery", lambda: "duplicate or redelivered message" in pipeline.full_log("worker"), timeout=120
    )
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1), timeout=180)
    [(status, retries, error, transcript)] = pipeline.statuses().values()
    assert (status, retries, error) == ("completed", 0, None)
    assert pipeline.query("SELECT outcome FROM attempts") == [("succeeded",)]
    [(task_id,)] = pipeline.query("SELECT task_id FROM recordings")
    assert "recording is processing on " in pipeline.full_log("worker")
    assert f"duplicate or redelivered message {task_id} dropped" in pipeline.full_log("worker")
