"""Files that change under the pipeline: replaced mid-transcription, unreadable, outside WATCH_DIR,
and a watcher killed in the middle of registering a big folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from speech import SENTENCES, conversation, long_speech, write_audio

pytestmark = pytest.mark.slow

# As root every file is readable; without these capabilities root obeys file permissions like anyone else.
NO_OVERRIDE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def test_a_file_replaced_while_it_is_transcribed(pipeline) -> None:
    """The old recording fails with the cause; the new audio becomes a recording of its own and completes."""
    path = pipeline.watch_dir / "call.m4a"
    write_audio(path, long_speech(150))
    replacement = write_audio(pipeline.tmp / "replacement.m4a", conversation(SENTENCES[3:5])).read_bytes()
    pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for(
        "the call to run",
        lambda: pipeline.query("SELECT 1 FROM recordings WHERE status = 'processing' AND progress_seconds > 0"),
    )
    path.write_bytes(replacement)  # overwritten in place, as a copy over it does
    pipeline.wait_for("both recordings", lambda: pipeline.all_settled(2), timeout=120)
    rows = pipeline.query("SELECT status, retry_count, error_message, transcript FROM recordings ORDER BY created_at")
    (old_status, old_retries, old_error, _), (new_status, _, new_error, transcript) = rows
    assert (old_status, old_retries) == ("failed", 0)
    assert old_error.startswith(f"File changed while it was being transcribed: {path} (")
    assert (new_status, new_error) == ("completed", None)
    assert "technician" in transcript.lower() and "pickup" in transcript.lower()
    assert "technician" in (pipeline.output_dir / "call.txt").read_text().lower()  # the outputs are the new audio's


def test_a_file_without_read_permission_fails_with_the_cause_then_works_once_readable(pipeline) -> None:
    wrap = NO_OVERRIDE if os.geteuid() == 0 else []
    locked = pipeline.watch_dir / "locked.m4a"
    write_audio(locked, conversation(SENTENCES[:1]))
    locked.chmod(0)
    write_audio(pipeline.watch_dir / "good.m4a", conversation(SENTENCES[1:2]))
    pipeline.start("worker", "--pool=solo", wrap=wrap)
    pipeline.start("beat")
    pipeline.start("watch", wrap=wrap)
    pipeline.wait_for("both files", lambda: pipeline.all_settled(2))
    status = pipeline.statuses()
    assert status["good.m4a"][0] == "completed"
    state, retries, error, _ = status["locked.m4a"]
    assert (state, retries) == ("failed", 0)
    assert error == f"Permission denied: {locked}: give the worker's account read access, then reset the recording"
    assert f"cannot read {locked} (Permission denied): registering it" in pipeline.full_log("watch")

    locked.chmod(0o644)  # the operator fixes the permission and resets it
    [(recording_id,)] = pipeline.query("SELECT id FROM recordings WHERE file_name = 'locked.m4a'")
    cli = str(Path(sys.executable).parent / "transcriber")
    reset = subprocess.run([cli, "reset", str(recording_id)], env=pipeline.env, capture_output=True, text=True)
    assert reset.returncode == 0, reset.stderr
    done = "SELECT 1 FROM recordings WHERE file_name = 'locked.m4a' AND status = 'completed'"
    pipeline.wait_for("the reset file", lambda: pipeline.query(done))
    assert "quarterly invoice" in pipeline.statuses()["locked.m4a"][3].lower()
    assert pipeline.query("SELECT count(*) FROM recordings")[0][0] == 2  # not registered a second time


def test_a_recording_outside_watch_dir_is_refused(pipeline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A row inserted by hand (or by someone with database access) cannot make a worker read other files."""
    from transcriber import lifecycle
    from transcriber.db import transaction
    from transcriber.tables import utcnow

    outside = tmp_path / "elsewhere" / "secret.m4a"
    outside.parent.mkdir()
    write_audio(outside, conversation(SENTENCES[:1]))
    (pipeline.watch_dir / "link.m4a").symlink_to(outside)  # a symlink in the folder is not followed either
    with transaction(pipeline.sessions) as s:
        lifecycle.register_recording(
            s, file_path=str(outside), file_name="secret.m4a", file_size=outside.stat().st_size,
            content_sha256="0" * 64, now=utcnow(),
        )  # fmt: skip
    pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.wait_for("the refusal", lambda: pipeline.all_settled(1))
    [(state, retries, error, transcript)] = pipeline.statuses().values()
    assert (state, retries, transcript) == ("failed", 0, None)
    assert error.startswith(f"Refused: {outside} is outside WATCH_DIR ({pipeline.watch_dir})")
    assert f"ignoring {pipeline.watch_dir / 'link.m4a'}: symbolic link" in pipeline.full_log("watch")


def test_the_watcher_killed_mid_scan_loses_and_duplicates_nothing(pipeline, redis_url: str) -> None:
    """SIGKILL after the first batches committed; a new watcher and beat finish the job exactly once."""
    count = 2000
    for n in range(count):  # not audio, but the watcher registers before anything decodes them
        (pipeline.watch_dir / f"call {n:04d}.m4a").write_bytes(os.urandom(512) + n.to_bytes(4, "big"))
    watcher = pipeline.start("watch", WATCH_SETTLE_SECONDS="0")
    engine_query = pipeline.query
    deadline = time.monotonic() + 60
    while not engine_query("SELECT 1 FROM recordings LIMIT 1") and time.monotonic() < deadline:
        time.sleep(0.01)
    pipeline.kill(watcher)
    registered_at_kill = engine_query("SELECT count(*) FROM recordings")[0][0]
    assert 0 < registered_at_kill < count, "the watcher finished before it was killed: use more files"

    pipeline.start("watch", WATCH_SETTLE_SECONDS="0")
    pipeline.start("beat")
    client = redis.Redis.from_url(redis_url)
    pipeline.wait_for("every file registered", lambda: engine_query("SELECT count(*) FROM recordings")[0][0] == count)
    pipeline.wait_for("one message per recording", lambda: client.llen("transcriber") >= count, timeout=60)
    time.sleep(2)  # a few more dispatch rounds: nothing more may be sent
    messages = [json.loads(m)["headers"]["id"] for m in client.lrange("transcriber", 0, -1)]
    client.close()
    rows = engine_query("SELECT file_path, task_id FROM recordings")
    assert len({path for path, _ in rows}) == count  # every file once
    assert sorted(messages) == sorted(str(uuid.UUID(t)) for _, t in rows)  # one message each, none twice
