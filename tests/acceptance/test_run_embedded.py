"""``transcriber run`` in an empty folder with no server settings: SQLite, folder broker, bundled model."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from speech import SENTENCES, conversation, long_speech, write_audio
from transcriber import selfcheck

pytestmark = pytest.mark.slow

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")
# Only timings, no server, database or broker: progress is saved (and a Ctrl-C noticed) every half second, a file
# is taken half a second after it appears (safe: drop() makes it appear whole), and a call handed back is sent
# again 2 s after its last message (twice the cleanup interval) rather than 30 s.
# tiny.en and no diarizer: this test is about the embedded pipeline, not the models (the bundled base model's
# files: tests/unit/test_model_store.py; speaker turns: test_speakers.py). With the default base model and DIARIZE=auto
# it took 70 s here instead of 27 s.
TIMINGS = {"HEARTBEAT_SECONDS": "0.5", "WATCH_SETTLE_SECONDS": "0.5", "CLEANUP_INTERVAL_SECONDS": "1",
           "WHISPER_MODEL": "tiny.en", "DIARIZE": "off"}  # fmt: skip


def start(folder: Path, n: int) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(folder)), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [TRANSCRIBER, "run"],
        cwd=folder,
        env={**env, **TIMINGS},
        stdout=open(folder / f"run-{n}.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )


def drop(folder: Path, name: str, samples: np.ndarray) -> None:
    """A recording appears in the inbox whole, as a finished copy does."""
    staged = write_audio(folder / "staging" / name, samples)
    staged.rename(folder / "inbox" / name)


def rows(folder: Path, sql: str) -> list[tuple]:
    db = folder / "data" / "transcriber.db"
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def wait_for(what: str, check, folder: Path, timeout: float = 240, poll: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(poll)
    pytest.fail(f"timed out waiting for {what}\n{logs(folder)}")


def logs(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(folder.rglob("*.log")))


def model_processes(run: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The processes that hold the models (``run`` -> worker -> one model process per worker thread)."""
    found = []
    for child in psutil.Process(run.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "transcriber.model_process" in child.cmdline():
                found.append(child)
    assert found, "no model process under run"
    return found


def stop(proc: subprocess.Popen[bytes], folder: Path, paused: list[psutil.Process] = ()) -> int:  # type: ignore[assignment]
    """Ctrl-C; a run still there 90 s later is killed with all it started, and the test fails.

    ``paused`` model processes go on once the Ctrl-C is sent: the stop has begun, so it lands mid-call, and the
    worker's ending of them is not a wait on processes that cannot answer."""
    started = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    for model in paused:
        with contextlib.suppress(psutil.NoSuchProcess):
            model.resume()
    try:
        return proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        for leftover in [proc, *started]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                leftover.kill()
        pytest.fail(f"transcriber run did not stop on Ctrl-C\n{logs(folder)}")


def test_run_needs_no_server_and_resumes_after_ctrl_c(tmp_path: Path) -> None:
    long_call = long_speech(120)
    first = start(tmp_path, 1)
    models: list[psutil.Process] = []
    try:
        wait_for("the inbox", lambda: (tmp_path / "inbox").is_dir(), tmp_path)
        drop(tmp_path, "short call.m4a", conversation(SENTENCES[:2]))
        wait_for("the transcript", lambda: (tmp_path / "transcripts" / "short call.txt").exists(), tmp_path)
        assert "quarterly invoice" in (tmp_path / "transcripts" / "short call.txt").read_text().lower()
        for ext in ("srt", "vtt", "json"):
            assert (tmp_path / "transcripts" / f"short call.{ext}").exists()

        # A long call is being transcribed when the operator presses Ctrl-C. As soon as some of it is saved its model
        # process is paused (SIGSTOP): how fast the machine transcribes no longer decides where the Ctrl-C lands.
        drop(tmp_path, "long call.m4a", long_call)
        wait_for(
            "progress saved on the long call",
            lambda: rows(tmp_path, "SELECT 1 FROM recordings WHERE status='processing' AND progress_seconds > 0"),
            tmp_path,
            poll=0.05,
        )
        models = model_processes(first)  # one per worker thread: the long call's is among them
        for model in models:
            model.suspend()
        [(status, saved)] = rows(
            tmp_path, "SELECT status, progress_seconds FROM recordings WHERE file_name='long call.m4a'"
        )
        # Only a machine that transcribes the rest of the call (some 90 s) within a heartbeat could have finished it.
        assert status == "processing", f"the long call was {status} before Ctrl-C: make it longer\n{logs(tmp_path)}"
    finally:
        try:
            assert stop(first, tmp_path, models) == 0, logs(tmp_path)
        finally:
            for model in models:
                if model.is_running():  # left behind (the test fails below): not left paused
                    model.kill()
    [(status, retries)] = rows(tmp_path, "SELECT status, retry_count FROM recordings WHERE file_name='long call.m4a'")
    assert (status, retries) == ("queued", 0)  # handed back, no retry spent
    # By the worker itself as it stopped (supervisor.stop_signal(), made a warm shutdown), not rescued as stuck.
    [(outcome, cause, error)] = rows(
        tmp_path, "SELECT a.outcome, a.cause, a.error_message FROM attempts a JOIN recordings r "
        "ON r.id = a.recording_id WHERE r.file_name = 'long call.m4a'",
    )  # fmt: skip
    assert (outcome, cause) == ("lost", "interrupted") and error.startswith("Interrupted: the worker shut down")
    worker_log = (tmp_path / "data" / "logs" / "worker.log").read_text(errors="replace")
    assert "SIGTERM (how 'transcriber run' stops this worker) is a warm shutdown" in worker_log
    assert not [m for m in models if m.is_running()]  # the worker ended its model processes: nothing left behind
    reports = {r["role"]: r for r in selfcheck.read_reports(tmp_path / "data" / "service-checks")}
    assert sorted(reports) == ["beat", "watcher", "worker"]  # each process checked its folders as itself
    assert {c["status"] for r in reports.values() for c in r["checks"]} == {"ok"}

    drop(tmp_path, "dropped while stopped.m4a", conversation(SENTENCES[4:5]))
    second = start(tmp_path, 2)
    try:
        wait_for(
            "all three recordings",
            lambda: rows(tmp_path, "SELECT count(*) FROM recordings WHERE status='completed'") == [(3,)],
            tmp_path,
        )
    finally:
        assert stop(second, tmp_path) == 0, logs(tmp_path)
    attempts = rows(
        tmp_path,
        "SELECT a.outcome, a.audio_start_seconds, a.error_message FROM attempts a "
        "JOIN recordings r ON r.id = a.recording_id WHERE r.file_name = 'long call.m4a' ORDER BY a.attempt",
    )
    assert [a[0] for a in attempts] == ["lost", "succeeded"]
    assert attempts[0][2].startswith("Interrupted: the worker shut down")
    assert attempts[1][1] >= saved > 0  # resumed after the segments saved before Ctrl-C
    text = (tmp_path / "transcripts" / "long call.txt").read_text().lower()
    assert "insurance company" in text and "technician" in text
