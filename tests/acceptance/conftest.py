"""Real ``transcriber`` processes (worker, beat, watch) against real Postgres and Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from services import PrivatePostgres, PrivateRedis
from transcriber.db import make_engine, make_session_factory
from transcriber.migrate import upgrade_to_head

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")


class Pipeline:
    """Starts and stops real service processes; every process is killed at teardown."""

    def __init__(self, tmp: Path, db_url: str, redis_url: str) -> None:
        self.tmp = tmp
        self.watch_dir = tmp / "inbox"
        self.output_dir = tmp / "transcripts"
        self.watch_dir.mkdir()
        self.output_dir.mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(tmp)),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": db_url,
            "CELERY_BROKER_URL": redis_url,
            "WATCH_DIR": str(self.watch_dir),
            "OUTPUT_DIR": str(self.output_dir),
            "WHISPER_MODEL": "tiny.en",
            "WHISPER_CPU_THREADS": "2",
            "CLEANUP_INTERVAL_SECONDS": "1",
            "HEARTBEAT_SECONDS": "0.5",
            "STUCK_TIMEOUT_SECONDS": "4",
            "WATCH_SETTLE_SECONDS": "0.5",
            "WATCH_POLL_SECONDS": "1",
            "RETRY_BACKOFF_SECONDS": "0",
            # Speaker turns are tested on two-voice calls (test_speakers.py, which turns them on); the other
            # tests' calls have one voice and would only pay for the diarizer.
            "DIARIZE": "off",
        }
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.engine = make_engine(db_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)

    def use_database(self, url: str) -> None:
        """Point the processes started from now on, and the test's own queries, at another database."""
        self.env["DATABASE_URL"] = url
        self.engine.dispose()
        self.engine = make_engine(url)
        self.sessions = make_session_factory(self.engine)

    def start(self, command: str, *args: str, wrap: Sequence[str] = (), **env: str) -> subprocess.Popen[bytes]:
        """Start ``transcriber COMMAND ARGS`` (under ``wrap``, e.g. ``setpriv ...``) with extra settings."""
        log = open(self.tmp / f"{command}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        extra = list(args)
        if command == "beat":
            extra.append(f"--schedule={self.tmp / 'beat-schedule'}")
        proc = subprocess.Popen(
            [*wrap, TRANSCRIBER, command, *extra],
            cwd=self.tmp,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL takes the pool and model process too
        )
        self.processes.append((command, proc))
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop_all(self, *, graceful: bool = True) -> None:
        """Stop every process: SIGTERM (a warm shutdown, which the test may check the logs of), or SIGKILL."""
        for _, proc in self.processes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
                except ProcessLookupError:
                    continue
        for _, proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill(proc)
        self.engine.dispose()

    def full_log(self, command: str) -> str:
        """Everything the processes of one kind (e.g. all workers) wrote."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob(f"{command}-*.log")))

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.tmp.glob("*.log"))
        )

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.sessions() as session:
            return list(session.execute(text(sql), params).all())

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
        """Poll until ``check()`` is truthy; on timeout fail with the services' logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            for command, proc in self.processes:
                if proc.poll() is not None and command != "watch-once" and proc.returncode not in (0, -9, -15):
                    pytest.fail(f"{command} exited with {proc.returncode} while waiting for {what}\n{self.logs()}")
            time.sleep(0.3)
        pytest.fail(f"timed out waiting for {what}\n{self.logs()}")

    def statuses(self) -> dict[str, tuple[Any, ...]]:
        rows = self.query("SELECT file_name, status, retry_count, error_message, transcript FROM recordings")
        return {r[0]: tuple(r[1:]) for r in rows}

    def all_settled(self, count: int) -> bool:
        rows = self.query("SELECT status FROM recordings")
        return len(rows) == count and all(r[0] in ("completed", "failed") for r in rows)


@pytest.fixture
def pipeline(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path, pg_url, redis_url)
    yield p
    p.stop_all(graceful=False)  # the test is over: nothing left to check, no warm shutdown to wait for


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A Redis of this test's own, which it may restart or start late (not started yet)."""
    server = PrivateRedis()
    yield server
    server.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A Postgres cluster of this test's own, running, with a migrated database ``transcriber``."""
    server = PrivatePostgres()
    server.start()
    try:
        admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE transcriber"))
        admin.dispose()
        upgrade_to_head(server.url("transcriber"))
        yield server
    finally:
        server.remove()
