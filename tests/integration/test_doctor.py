"""``transcriber doctor`` against real Postgres, Redis and the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from transcriber import lifecycle
from transcriber.db import make_engine, make_session_factory, transaction

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    done = subprocess.run(
        [TRANSCRIBER, "doctor", "--json", *args], env=env, capture_output=True, text=True, timeout=120
    )
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)}


def test_doctor_passes_then_catches_a_limit_too_short(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": pg_url, "CELERY_BROKER_URL": redis_url,
        "WATCH_DIR": str(tmp_path / "in"), "OUTPUT_DIR": str(tmp_path / "out"), "WHISPER_MODEL": "tiny.en",
        "TASK_TIMEOUT_SECONDS": "1800",
    }  # fmt: skip
    code, checks = doctor(env)
    assert checks["beat"]["status"] == "fail" and code == 1  # nothing has run the cleanup yet
    assert checks["model"]["status"] == "ok" and "loaded in" in checks["model"]["detail"]
    assert all(checks[n]["status"] == "ok" for n in ("database", "broker", "WATCH_DIR", "OUTPUT_DIR"))

    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        lifecycle.record_service_run(s, name="cleanup_stuck", now=now, detail="rescued 0")
    assert doctor(env, "--no-model")[0] == 0

    # Twenty 10-minute calls took 0.6 s of work per second of audio; a 62-minute call now waits.
    with transaction(sessions) as s:
        for n in range(21):
            rec, _ = lifecycle.register_recording(
                s, file_path=f"/in/{n}.m4a", file_name=f"{n}.m4a", file_size=1, content_sha256=f"{n:064d}",
                now=now, duration_seconds=3720.0 if n == 20 else 600.0,
            )  # fmt: skip
    with sessions.begin() as s:
        s.execute(
            text(
                "UPDATE recordings SET status='completed', work_seconds_per_audio_second=0.6 WHERE file_name<>'20.m4a'"
            )
        )
    code, checks = doctor(env, "--no-model")
    assert code == 1
    detail = checks["time limit"]["detail"]
    assert checks["time limit"]["status"] == "fail"
    assert "1 queued/failed recording(s) cannot finish in one attempt" in detail
    assert "set TASK_TIMEOUT_SECONDS=3360" in detail  # 3720 s x 0.6 x 1.5, to the minute
    assert doctor({**env, "TASK_TIMEOUT_SECONDS": "3600"}, "--no-model")[1]["time limit"]["status"] == "ok"
    with transaction(sessions) as s:  # beat stopped long ago
        lifecycle.record_service_run(s, name="cleanup_stuck", now=now - timedelta(hours=1), detail="")
    assert doctor(env, "--no-model")[1]["beat"]["status"] == "fail"
    engine.dispose()


def test_doctor_names_a_database_or_broker_that_is_down(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": pg_url, "CELERY_BROKER_URL": redis_url,
        "WATCH_DIR": str(tmp_path / "in"), "OUTPUT_DIR": str(tmp_path / "out"),
    }  # fmt: skip
    code, checks = doctor({**env, "CELERY_BROKER_URL": "redis://:s3cret@127.0.0.1:1/0"}, "--no-model")
    assert code == 1 and checks["broker"]["status"] == "fail"
    assert "check CELERY_BROKER_URL" in checks["broker"]["detail"] and "s3cret" not in checks["broker"]["detail"]
    assert checks["database"]["status"] == "ok"

    code, checks = doctor({**env, "DATABASE_URL": "postgresql+psycopg2://app:s3cret@127.0.0.1:1/x"}, "--no-model")
    assert code == 1 and checks["database"]["status"] == "fail" and checks["broker"]["status"] == "ok"
    assert "s3cret" not in json.dumps(checks)
