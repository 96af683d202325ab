"""``transcriber run`` in an empty folder with no settings at all: SQLite, folder broker, bundled model."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speech import SENTENCES, conversation, long_speech, write_audio

pytestmark = pytest.mark.slow

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")


def start(folder: Path, n: int) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(folder)), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [TRANSCRIBER, "run"], cwd=folder, env=env, stdout=open(folder / f"run-{n}.log", "wb"), stderr=subprocess.STDOUT
    )


def rows(folder: Path, sql: str) -> list[tuple]:
    db = folder / "data" / "transcriber.db"
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return []


def wait_for(what: str, check, folder: Path, timeout: float = 240):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(folder.rglob("*.log")))
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    return proc.wait(timeout=90)


def test_run_needs_no_server_and_resumes_after_ctrl_c(tmp_path: Path) -> None:
    first = start(tmp_path, 1)
    try:
        wait_for("the inbox", lambda: (tmp_path / "inbox").is_dir(), tmp_path)
        write_audio(tmp_path / "inbox" / "short call.m4a", conversation(SENTENCES[:2]))
        wait_for("the transcript", lambda: (tmp_path / "transcripts" / "short call.txt").exists(), tmp_path)
        assert "quarterly invoice" in (tmp_path / "transcripts" / "short call.txt").read_text().lower()
        for ext in ("srt", "vtt", "json"):
            assert (tmp_path / "transcripts" / f"short call.{ext}").exists()

        # A long call is being transcribed when the operator presses Ctrl-C.
        write_audio(tmp_path / "inbox" / "long call.m4a", long_speech(120))
        wait_for(
            "progress on the long call",
            lambda: rows(tmp_path, "SELECT 1 FROM recordings WHERE status='processing' AND progress_seconds > 0"),
            tmp_path,
        )
    finally:
        assert stop(first) == 0
    [(status, retries)] = rows(tmp_path, "SELECT status, retry_count FROM recordings WHERE file_name='long call.m4a'")
    assert (status, retries) == ("queued", 0)  # handed back, no retry spent

    write_audio(tmp_path / "inbox" / "dropped while stopped.m4a", conversation(SENTENCES[4:5]))
    second = start(tmp_path, 2)
    try:
        wait_for(
            "all three recordings",
            lambda: rows(tmp_path, "SELECT count(*) FROM recordings WHERE status='completed'") == [(3,)],
            tmp_path,
        )
    finally:
        assert stop(second) == 0
    attempts = rows(
        tmp_path,
        "SELECT a.outcome, a.audio_start_seconds, a.error_message FROM attempts a "
        "JOIN recordings r ON r.id = a.recording_id WHERE r.file_name = 'long call.m4a' ORDER BY a.attempt",
    )
    assert [a[0] for a in attempts] == ["lost", "succeeded"]
    assert attempts[0][2].startswith("Interrupted: the worker shut down")
    assert attempts[1][1] > 0  # resumed after the segments saved before Ctrl-C
    text = (tmp_path / "transcripts" / "long call.txt").read_text().lower()
    assert "insurance company" in text and "technician" in text
