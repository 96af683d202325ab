"""Operator commands of issue 11, as real subprocesses: list, lookup by file name, full names, closed pipes,
beat's schedule file, a GPU that is not there, Heroku-style URLs and the Celery CLI's broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from transcriber import lifecycle
from transcriber.db import make_engine, make_session_factory, transaction
from transcriber.tables import Recording

BIN = Path(sys.executable).parent
TRANSCRIBER = str(BIN / "transcriber")
LONG = "Call recording " + "x" * 200 + " +18134353769_200301_171119.m4a"
# file name, subfolder, status, registered (UTC), error
ROWS = [
    ("Call recording +18134353769_200301_171119.m4a", "2020", "completed", datetime(2026, 3, 1, 17, 11), None),
    ("Call recording +18134353769_200302_090000.m4a", "2020", "failed", datetime(2026, 3, 2, 9, 0), "Empty file"),
    ("Call recording +14155550123_200303_120000.m4a", "2020", "queued", datetime(2026, 3, 3, 12, 0), None),
    ("100%_done call.m4a", "misc", "skipped", datetime(2026, 3, 4, 8, 0), None),
    ("dup.m4a", "a", "queued", datetime(2026, 3, 5, 8, 0), None),
    ("dup.m4a", "b", "queued", datetime(2026, 3, 5, 9, 0), None),
    (LONG, "2020", "failed", datetime(2026, 3, 6, 8, 0), "Unreadable audio: moov atom not found"),
]


def cli(env: dict[str, str], *args: str, ok: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([TRANSCRIBER, *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **extra}


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Recordings of every status registered on known days, on Postgres and on SQLite."""
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    for n, (name, folder, status, registered, error) in enumerate(ROWS):
        with transaction(sessions) as s:
            rec, _ = lifecycle.register_recording(
                s, file_path=f"/calls/{folder}/{name}", file_name=name, file_size=1,
                content_sha256=f"{n:064d}", now=registered.replace(tzinfo=UTC), duration_seconds=600.0 + n,
            )  # fmt: skip
            rec_id = rec.id
        with sessions.begin() as s:  # the statuses as SQL would leave them (the lifecycle is tested elsewhere)
            s.execute(update(Recording).where(Recording.id == rec_id).values(status=status, error_message=error))
    engine.dispose()
    return base_env(tmp_path, DATABASE_URL=db_url, WATCH_DIR="/calls", OUTPUT_DIR=str(tmp_path / "out"))


def listed(env: dict[str, str], *args: str) -> list[str]:
    return [row["file_name"] for row in json.loads(cli(env, "list", "--json", *args).stdout)]


def test_list_shows_every_status_newest_first(env: dict[str, str]) -> None:
    out = cli(env, "list").stdout
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "completed" in out and "Call recording +18134353769_200301_171119.m4a" in out  # completed ones too
    assert listed(env) == [row[0] for row in reversed(ROWS)]
    [first] = json.loads(cli(env, "list", "--json", "--limit", "1").stdout)
    assert set(first) >= {"id", "status", "file_name", "file_path", "duration_seconds", "created_at"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--status", "completed,failed"], [LONG, ROWS[1][0], ROWS[0][0]]),
        (["--status", "skipped", "--status", "COMPLETED"], [ROWS[3][0], ROWS[0][0]]),
        (["--name", "CALL RECORDING +1813"], [ROWS[1][0], ROWS[0][0]]),  # any case
        (["--name", "%_"], [ROWS[3][0]]),  # % and _ are letters of the name, not wildcards
        (["--name", "_20030"], [LONG, ROWS[2][0], ROWS[1][0], ROWS[0][0]]),
        (["--since", "2026-03-02", "--until", "2026-03-03"], [ROWS[2][0], ROWS[1][0]]),  # the until day included
        (["--since", "2026-03-02 09:00", "--until", "2026-03-02T09:00:01"], [ROWS[1][0]]),
        (["--until", "2026-03-01T19:12+02:00"], [ROWS[0][0]]),  # with an offset: converted to UTC (17:12)
        (["--until", "2026-03-01 17:11"], []),  # until is exclusive
        (["--status", "queued", "--name", "dup"], ["dup.m4a", "dup.m4a"]),
        (["--status", "processing"], []),
    ],
)
def test_list_filters(env: dict[str, str], args: list[str], expected: list[str]) -> None:
    assert listed(env, *args) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "done"], "--status 'done': expected one of queued, processing, completed, failed, skipped"),
        (["--since", "yesterday"], "--since 'yesterday': expected a date (2026-03-01)"),
    ],
)
def test_list_mistakes_are_one_line(env: dict[str, str], args: list[str], message: str) -> None:
    done = cli(env, "list", *args, ok=False)
    [line] = done.stderr.strip().splitlines()
    assert done.returncode == 1 and line.startswith(f"transcriber: {message}")


def test_a_recording_is_found_by_its_file_name(env: dict[str, str]) -> None:
    name = "Call recording +18134353769_200301_171119.m4a"
    detail = json.loads(cli(env, "status", name, "--json").stdout)
    assert (detail["file_name"], detail["status"]) == (name, "completed")
    assert json.loads(cli(env, "status", "_200302_", "--json").stdout)["status"] == "failed"  # a unique piece
    assert json.loads(cli(env, "attempts", "/calls/b/dup.m4a", "--json").stdout)["file_path"] == "/calls/b/dup.m4a"
    assert f"file      /calls/2020/{name}" in cli(env, "status", name).stdout

    out = cli(env, "reset", "call recording +18134353769_200302").stdout  # any case
    assert "failed -> queued" in out and "1 recording(s) changed" in out


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("dup.m4a", "several recordings are named 'dup.m4a' ("),
        ("+1813", "several recordings have names containing '+1813' ("),
        ("nothing like it", "no recording matches 'nothing like it': give its id"),
    ],
)
def test_a_name_that_is_not_unique_or_unknown_is_one_line(env: dict[str, str], ref: str, message: str) -> None:
    done = cli(env, "status", ref, ok=False)
    assert done.returncode == 1 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_ids_still_win(env: dict[str, str]) -> None:
    [row] = json.loads(cli(env, "list", "--json", "--name", "_200303_").stdout)
    assert json.loads(cli(env, "status", row["id"][:8], "--json").stdout)["id"] == row["id"]
    assert json.loads(cli(env, "status", row["id"].upper(), "--json").stdout)["id"] == row["id"]


def test_failed_prints_whole_names(env: dict[str, str]) -> None:
    out = cli(env, "failed").stdout
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "Call recording +18134353769_200302_090000.m4a" in out  # date and time at the end, not cut
    first = next(n for n, line in enumerate(lines) if line[10:] == LONG[:70])  # beside its id, then lines of 70
    assert "".join(line[10:] for line in lines[first : first + 4]) == LONG


# ---------------------------------------------------------------- a reader that went away


def run_into_closed_pipe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run with stdout a pipe nobody reads any more: every write fails, as under '| head' once head exits."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([TRANSCRIBER, *args], env=env, stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [["list"], ["status"], ["failed", "--json"], ["attempts", "dup.m4a"], ["--help"]])
def test_a_closed_pipe_ends_quietly(env: dict[str, str], args: list[str]) -> None:
    if args[0] == "attempts":
        args = ["attempts", "/calls/a/dup.m4a"]
    done = run_into_closed_pipe(env, *args)
    assert (done.returncode, done.stderr.decode()) == (141, "")  # 128 + SIGPIPE, as the shell reports it


# ---------------------------------------------------------------- services


@pytest.fixture
def beat(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    cwd = tmp_path / "started here"
    cwd.mkdir()
    env = base_env(tmp_path, DATABASE_URL=sqlite_url, DATA_DIR=str(tmp_path / "data"), CLEANUP_INTERVAL_SECONDS="1")
    proc = subprocess.Popen([TRANSCRIBER, "beat"], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    yield proc, cwd
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_beat_keeps_its_schedule_in_data_dir(beat: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    proc, cwd = beat
    deadline = time.monotonic() + 90
    while not list((tmp_path / "data").glob("celerybeat-schedule*")):
        assert proc.poll() is None, "beat exited"
        assert time.monotonic() < deadline, "beat wrote no schedule file in DATA_DIR"
        time.sleep(0.2)
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("command", ["worker", "run"])
def test_cuda_without_a_gpu_refuses_to_start(tmp_path: Path, sqlite_url: str, command: str) -> None:
    from transcriber.runner import cuda_available

    assert not cuda_available(), "this test is about a machine without a GPU"
    env = base_env(tmp_path, DATABASE_URL=sqlite_url, WHISPER_DEVICE="cuda", DATA_DIR=str(tmp_path / "data"))
    done = cli(env, command, ok=False, cwd=tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("transcriber: configuration error: WHISPER_DEVICE=cuda but CTranslate2 sees no CUDA GPU")


def test_worker_and_beat_help_need_no_model(tmp_path: Path) -> None:
    env = base_env(tmp_path, WHISPER_MODEL="/no/such/model", WHISPER_DEVICE="cuda")
    for command in ("worker", "beat"):
        done = cli(env, command, "--help", cwd=tmp_path)
        assert "--concurrency" in done.stdout if command == "worker" else "--schedule" in done.stdout
    assert list(tmp_path.iterdir()) == []  # not even a data folder


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_postgres_url_without_a_driver_works(pg_url: str, tmp_path: Path, scheme: str) -> None:
    """Heroku-style postgres://, and postgresql:// (psycopg 3 to SQLAlchemy 2.1, which is not installed)."""
    env = base_env(tmp_path, DATABASE_URL=f"{scheme}://" + pg_url.split("://", 1)[1])
    assert json.loads(cli(env, "status", "--json").stdout)["recordings"]["queued"] == 0
    assert json.loads(cli(env, "list", "--json").stdout) == []


# ---------------------------------------------------------------- the Celery CLI


def celery(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "celery"), "-A", "transcriber.celery_app", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_celery_cli_without_a_broker_url_says_which_broker(tmp_path: Path, redis_url: str) -> None:
    done = celery(tmp_path, base_env(tmp_path), "inspect", "ping", "--timeout=0.5")
    warning = [line for line in done.stderr.splitlines() if line.startswith("transcriber:")]
    assert warning == [
        f"transcriber: no CELERY_BROKER_URL in the environment or .env: using the folder broker under "
        f"{tmp_path / 'data' / 'broker'}; set CELERY_BROKER_URL=redis://... (or TRANSCRIBER_ENV_FILE, or celery -b)"
    ]
    (tmp_path / ".env").write_text(f"CELERY_BROKER_URL={redis_url}\n", encoding="utf-8")
    done = celery(tmp_path, base_env(tmp_path), "inspect", "ping", "--timeout=0.5")
    assert "transcriber:" not in done.stderr
    assert "no CELERY_BROKER_URL" not in celery(tmp_path, base_env(tmp_path, CELERY_BROKER_URL=redis_url),
                                                 "inspect", "ping", "--timeout=0.5").stderr  # fmt: skip
