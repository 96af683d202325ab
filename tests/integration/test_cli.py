"""The operator commands, run as real subprocesses against a database holding every status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from transcriber import lifecycle
from transcriber.db import make_engine, make_session_factory, transaction
from transcriber.errors import AttemptTimeout, PermanentError
from transcriber.segments import Segment
from transcriber.transcripts import load_segments

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")
T0 = datetime.now(UTC) - timedelta(hours=1)
POLICY = lifecycle.RetryPolicy(max_retries=1, backoff_base=0, backoff_cap=0)


def cli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([TRANSCRIBER, *args], env=env, capture_output=True, text=True, timeout=120)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **extra}


@pytest.fixture
def env(pg_url: str, tmp_path: Path) -> dict[str, str]:
    """A database with a recording in every status, and runs that did not succeed."""
    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    ids: dict[str, uuid.UUID] = {}
    with transaction(sessions) as s:
        for status in ("queued", "processing", "completed", "failed", "skipped", "timedout"):
            rec, _ = lifecycle.register_recording(
                s,
                file_path=f"/calls/{status} call.m4a",
                file_name=f"{status} call.m4a",
                file_size=1,
                content_sha256=status.ljust(64, "0"),
                now=T0,
            )
            ids[status] = rec.id
    for status in ("processing", "completed", "failed", "skipped", "timedout"):
        with transaction(sessions) as s:
            claim = lifecycle.claim_recording(s, recording_id=ids[status], task_id="t", worker="host:1", now=T0)
            assert claim is not None
            if status == "completed":
                lifecycle.save_progress(
                    s, claim, now=T0, first_idx=0, segments=[Segment(3725.5, 3727.0, " Hello.")],
                    progress_seconds=3727.0,
                )  # fmt: skip
                lifecycle.complete_recording(
                    s,
                    claim,
                    segments=load_segments(s, claim.recording_id),
                    now=T0,
                    language="en",
                    duration_seconds=3727.0,
                )
            elif status == "failed":
                lifecycle.fail_attempt(s, claim, error=PermanentError("Unreadable audio: moov atom not found"),
                                       now=T0, policy=POLICY)  # fmt: skip
        if status == "timedout":
            for _ in range(2):
                with transaction(sessions) as s:
                    lifecycle.fail_attempt(s, claim, error=AttemptTimeout(1800), now=T0, policy=POLICY)
                with transaction(sessions) as s:
                    claim = lifecycle.claim_recording(s, recording_id=ids[status], task_id="u", worker="h", now=T0)
                    if claim is None:
                        break
    with sessions.begin() as s:
        s.execute(text("UPDATE recordings SET status = 'skipped' WHERE file_name = 'skipped call.m4a'"))
        s.execute(
            text(
                "UPDATE recordings SET needs_review = true, review_reasons = 'low confidence (mean log-probability "
                "-1.40)' WHERE status = 'completed'"
            )
        )
    engine.dispose()
    return base_env(tmp_path, DATABASE_URL=pg_url, OUTPUT_DIR=str(tmp_path / "out"), WATCH_DIR="/calls")


def test_status_reads_at_a_glance(env: dict[str, str]) -> None:
    out = cli(env, "status").stdout
    assert "queued 1  processing 1  completed 1  failed 2  skipped 1" in out
    assert "run(s) did not succeed, for 2 failed recording(s)" in out
    assert "processing call.m4a" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    data = json.loads(cli(env, "status", "--json").stdout)
    assert data["recordings"]["failed"] == 2 and data["attempts"]["timeout"] == 2
    assert [p["file_name"] for p in data["processing"]] == ["processing call.m4a"]


def test_failed_lists_the_cause(env: dict[str, str]) -> None:
    out = cli(env, "failed").stdout
    assert "Unreadable audio: moov atom" in out and "Max retries exceeded (1): Timeout exceeded" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    rows = json.loads(cli(env, "failed", "--json").stdout)
    assert {r["file_name"]: r["retry_count"] for r in rows} == {"failed call.m4a": 0, "timedout call.m4a": 1}


def test_attempts_reset_and_skip(env: dict[str, str]) -> None:
    failed = {r["file_name"]: r["id"] for r in json.loads(cli(env, "failed", "--json").stdout)}
    timed_out = failed["timedout call.m4a"]
    out = cli(env, "attempts", timed_out[:8]).stdout
    assert out.count("timeout") == 2 and "TimeLimitExceeded(1800)" in out

    out = cli(env, "reset", "--failed").stdout
    assert "failed -> queued" in out and "2 recording(s) changed" in out
    assert json.loads(cli(env, "failed", "--json").stdout) == []
    detail = json.loads(cli(env, "status", timed_out, "--json").stdout)
    assert (detail["status"], detail["retry_count"], detail["error_message"]) == ("queued", 0, None)

    changed = json.loads(cli(env, "skip", timed_out[:8], "--json").stdout)
    assert [(c["old_status"], c["new_status"]) for c in changed] == [("queued", "skipped")]
    missing = cli(env, "reset", "ffffffff", ok=False)
    assert missing.returncode == 1 and "no recording matches 'ffffffff'" in missing.stderr


def test_export_rebuilds_subtitles_past_one_hour(env: dict[str, str], tmp_path: Path) -> None:
    rows = json.loads(cli(env, "status", "--json").stdout)
    assert rows["recordings"]["completed"] == 1
    completed = cli(env, "export", "--help").stdout  # help works without a recording
    assert "--format" in completed
    status = json.loads(cli(env, "failed", "--json").stdout)
    assert status  # sanity: fixture intact
    ref = _completed_id(env)
    srt = cli(env, "export", ref, "--format", "srt", "-o", "-").stdout
    assert srt == "1\n01:02:05,500 --> 01:02:07,000\nHello.\n"
    written = Path(cli(env, "export", ref, "--format", "vtt").stdout.strip())
    assert written == tmp_path / "out" / "completed call.vtt"
    assert "01:02:05.500 --> 01:02:07.000" in written.read_text()


def _completed_id(env: dict[str, str]) -> str:
    engine = make_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        value = conn.execute(text("SELECT id FROM recordings WHERE status = 'completed'")).scalar_one()
    engine.dispose()
    return str(value)


@pytest.mark.parametrize(
    ("extra", "args", "expected"),
    [
        ({"TASK_TIMEOUT_SECONDS": "abc"}, ["status"], "TASK_TIMEOUT_SECONDS=abc is invalid"),
        ({"TASK_MAX_RETRIES": "-1"}, ["status"], "TASK_MAX_RETRIES=-1 is invalid"),
        ({"WHISPER_DEVICE": "gpu"}, ["worker"], "WHISPER_DEVICE=gpu is invalid: expected one of auto, cpu, cuda"),
        ({"TRANSCRIBER_ENV_FILE": "/nowhere/.env"}, ["status"], "TRANSCRIBER_ENV_FILE=/nowhere/.env does not exist"),
        (
            {"DATABASE_URL": "postgresql+psycopg2://app:s3cret-pw@127.0.0.1:1/x"},
            ["status"],
            "cannot reach the database",
        ),
        ({"WATCH_DIR": "/no/such/folder"}, ["watch", "--once"], "WATCH_DIR=/no/such/folder is not a folder"),
        ({"WHISPER_MODEL": "/no/such/model"}, ["worker"], "WHISPER_MODEL=/no/such/model: no such model folder"),
    ],
)
def test_mistakes_are_one_line_without_traceback_or_secret(
    tmp_path: Path, extra: dict[str, str], args: list[str], expected: str
) -> None:
    done = cli(base_env(tmp_path, **{"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", **extra}), *args, ok=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0] and "Traceback" not in done.stderr and "s3cret" not in done.stderr


def test_broker_down_loses_nothing(tmp_path: Path, sqlite_url: str) -> None:
    """The watcher registers the file anyway; beat's dispatch sends it once the broker is back."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.wav").write_bytes(b"RIFF....")
    env = base_env(
        tmp_path, DATABASE_URL=sqlite_url, CELERY_BROKER_URL="redis://:s3cret@127.0.0.1:1/0", WATCH_DIR=str(inbox),
        WATCH_SETTLE_SECONDS="0",
    )  # fmt: skip
    done = cli(env, "watch", "--once")
    assert "registered 1 new recording(s)" in done.stdout
    assert "could not send recording" in done.stderr and "beat's dispatch sends it" in done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM recordings")).scalars().all() == ["queued"]
    engine.dispose()


def test_needs_review_lists_transcripts_to_distrust(env: dict[str, str]) -> None:
    out = cli(env, "status", "--needs-review").stdout
    assert "completed call.m4a" in out and "low confidence (mean log-probability -1.40)" in out
    [row] = json.loads(cli(env, "status", "--needs-review", "--json").stdout)
    assert row["file_name"] == "completed call.m4a"
    detail = cli(env, "status", row["id"]).stdout
    assert "review" in detail and "low confidence" in detail


def test_export_redacted_masks_the_copy_and_keeps_the_words_in_the_db(env: dict[str, str], tmp_path: Path) -> None:
    ref = _completed_id(env)
    said = "My card is four five three two zero one five one one two eight three zero three six six, thanks."
    engine = make_engine(env["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE segments SET text = :t"), {"t": said})
    written = Path(cli(env, "export", ref, "--format", "txt", "--redacted").stdout.strip())
    assert written == tmp_path / "out" / "completed call.redacted.txt"  # beside the original's place
    assert written.read_text() == "My card is [card], thanks.\n"
    assert cli(env, "export", ref, "--redacted", "numbers", "-o", "-").stdout == "My card is [card], thanks.\n"
    assert cli(env, "export", ref, "-o", "-").stdout == f"{said}\n"  # without --redacted: as said
    with engine.connect() as conn:
        assert conn.execute(text("SELECT text FROM segments")).scalar_one() == said
    engine.dispose()
