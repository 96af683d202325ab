"""``transcriber doctor`` against real Postgres, Redis and the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from transcriber import lifecycle
from transcriber.db import make_engine, make_session_factory, transaction
from transcriber.doctor import FAIL, run_checks
from transcriber.settings import Settings

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    """``transcriber doctor --json`` as an operator runs it: a process of its own."""
    done = subprocess.run(
        [TRANSCRIBER, "doctor", "--json", *args], env=env, capture_output=True, text=True, timeout=120
    )
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)}


def doctor_here(env: dict[str, str]) -> tuple[int, dict[str, dict[str, str]]]:
    """``doctor --no-model``'s checks in this process (the command itself is run above): seconds saved a call."""
    fields = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
    checks = run_checks(Settings(_env_file=None, **fields), now=datetime.now(UTC), include_model=False)
    return int(any(c.status == FAIL for c in checks)), {
        c.name: {"status": c.status, "detail": c.detail} for c in checks
    }


def test_doctor_passes_then_catches_a_limit_too_short(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": pg_url, "CELERY_BROKER_URL": redis_url,
        "WATCH_DIR": str(tmp_path / "in"), "OUTPUT_DIR": str(tmp_path / "out"), "WHISPER_MODEL": "tiny.en",
        "TASK_TIMEOUT_SECONDS": "1800", "SPLIT_MIN_SECONDS": "0",  # the incident: every call in one attempt
        "DATA_DIR": str(tmp_path / "data"),
    }  # fmt: skip
    code, checks = doctor(env)
    assert checks["beat"]["status"] == "fail" and code == 1  # nothing has run the cleanup yet
    assert checks["model"]["status"] == "ok" and "loaded in" in checks["model"]["detail"]
    assert checks["speakers"]["status"] == "ok" and "voice model loaded in" in checks["speakers"]["detail"]
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
    code, checks = doctor_here(env)
    assert code == 1
    detail = checks["time limit"]["detail"]
    assert checks["time limit"]["status"] == "fail"
    assert "1 queued/failed recording(s) cannot finish in one attempt" in detail
    assert "set TASK_TIMEOUT_SECONDS=3360" in detail  # 3720 s x 0.6 x 1.5, to the minute
    assert doctor_here({**env, "TASK_TIMEOUT_SECONDS": "3600"})[1]["time limit"]["status"] == "ok"
    # Split (the default), the same call is pieces of about 5 minutes: each fits in 1800 s.
    split = doctor_here({**env, "SPLIT_MIN_SECONDS": "600"})[1]
    assert split["time limit"]["status"] == "ok" and split["layout"]["status"] == "ok"
    with transaction(sessions) as s:  # beat stopped long ago
        lifecycle.record_service_run(s, name="cleanup_stuck", now=now - timedelta(hours=1), detail="")
    assert doctor_here(env)[1]["beat"]["status"] == "fail"
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


def doctor_text(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRANSCRIBER, "doctor", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A Postgres database nobody ran 'transcriber db upgrade' on."""
    name = f"transcriber_t_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_doctor_before_db_upgrade_says_so_in_one_line_each(database: str, empty_postgres: str, tmp_path: Path) -> None:
    url = empty_postgres if database == "postgresql" else f"sqlite:///{tmp_path / 'new.db'}"
    (tmp_path / "in").mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": url, "WATCH_DIR": str(tmp_path / "in"),
           "OUTPUT_DIR": str(tmp_path / "out"), "DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    done = doctor_text(env, "--no-model")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    by_name = {line[6:17].strip(): line for line in lines}
    for name in ("database", "beat", "time limit"):
        assert by_name[name].startswith("FAIL") and "run 'transcriber db upgrade'" in by_name[name], done.stdout
    assert "Error" not in done.stdout and "Traceback" not in done.stderr  # no ProgrammingError, no raw SQL
    assert "[SQL:" not in done.stdout and len(lines) == len(by_name)


def test_doctor_masks_passwords_in_query_strings(pg_url: str, redis_url: str, tmp_path: Path) -> None:
    """libpq and redis-py take ?password=...: doctor shows the URLs, never that value."""
    (tmp_path / "in").mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WATCH_DIR": str(tmp_path / "in"),
           "OUTPUT_DIR": str(tmp_path / "out"), "DATABASE_URL": f"{pg_url}?password=s3cret-db&sslmode=disable",
           "CELERY_BROKER_URL": f"{redis_url}?password=s3cret-redis"}  # fmt: skip
    for urls in (
        {},  # reachable: the URLs are shown in the OK lines
        {
            "DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:1/x?password=s3cret-db",
            "CELERY_BROKER_URL": "redis://127.0.0.1:1/0?password=s3cret-redis",
        },  # fmt: skip
    ):
        for args in (["--no-model"], ["--no-model", "--json"]):
            done = doctor_text({**env, **urls}, *args)
            output = done.stdout + done.stderr
            assert "password=***" in output, output
            assert "s3cret" not in output, output


def test_doctor_fails_the_model_check_for_cuda_without_a_gpu(pg_url: str, tmp_path: Path) -> None:
    from transcriber.runner import cuda_available

    assert not cuda_available(), "this test is about a machine without a GPU"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": pg_url, "WHISPER_DEVICE": "cuda",
           "WHISPER_MODEL": "tiny.en", "DIARIZE": "off"}  # fmt: skip
    _, checks = doctor(env)
    assert checks["model"]["status"] == "fail"
    assert checks["model"]["detail"].startswith("WHISPER_DEVICE=cuda but CTranslate2 sees no CUDA GPU")


def test_doctor_tells_where_webhooks_go_and_what_gave_up_without_the_token(pg_url: str, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": pg_url, "WATCH_DIR": str(tmp_path),
        "OUTPUT_DIR": str(tmp_path / "out"),
    }  # fmt: skip
    off = doctor(env, "--no-model")[1]["webhooks"]
    assert (off["status"], off["detail"]) == ("ok", "WEBHOOK_URL not set: no events are written")
    env |= {"WEBHOOK_URL": "https://hooks.example.com/T0/B1?token=t0ps3cret", "WEBHOOK_SECRET": "k"}
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO webhook_events (event_id, event, body, created_at, status, attempts, last_error) VALUES "
                "('0f1e2d3c-0000-4000-8000-000000000000', 'recording.failed', '{}', now(), 'failed', 15, "
                "'HTTP 401: bad signature')"
            )
        )
    engine.dispose()
    check = doctor(env, "--no-model")[1]["webhooks"]
    assert check["status"] == "warn"
    assert "1 event(s) to https://hooks.example.com gave up; last error: HTTP 401: bad signature" in check["detail"]
    assert "transcriber webhooks retry --failed" in check["detail"] and "t0ps3cret" not in check["detail"]


def test_each_beat_notes_its_ticks_and_old_ones_are_forgotten(sessions) -> None:  # type: ignore[no-untyped-def]
    from transcriber import maintenance

    now = datetime.now(UTC)
    long_host = "a-very-long-host-name-of-a-windows-server.branch-office.example.com"
    maintenance.record_beat_tick(sessions, host="gone", pid=1, now=now - timedelta(days=2))
    maintenance.record_beat_tick(sessions, host="app1", pid=4242, now=now - timedelta(seconds=30))
    maintenance.record_beat_tick(sessions, host=long_host, pid=77, now=now)  # prunes the one two days old
    with sessions() as s:
        names = set(s.scalars(text("SELECT name FROM service_runs")))
        assert names == {"beat app1 4242", maintenance.beat_row_name(long_host, 77)}
        assert all(len(n) <= 64 for n in names)
        live = maintenance.live_beats(s, now=now, within=60)
        assert [(b.host, b.pid) for b in live] == [(long_host, 77), ("app1", 4242)]  # the whole host name
        assert [(b.host, b.pid) for b in maintenance.live_beats(s, now=now, within=10)] == [(long_host, 77)]
    maintenance.forget_beat(sessions, host=long_host, pid=77)
    maintenance.forget_beat(sessions, host=long_host, pid=77)  # a second close: harmless
    with sessions() as s:
        assert [b.pid for b in maintenance.live_beats(s, now=now, within=60)] == [4242]
