"""A stop of the worker unit, for real: the unit's ExecStart as install.sh wrote it, a call in progress, the
unit's KillSignal to the main process only (what KillMode=mixed does), and the database afterwards.

The unit's own properties and install.sh: tests/unit/test_systemd_units.py, whose helpers this uses (and
test_run_embedded's, which stops ``transcriber run`` the same way).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import Engine, text

from acceptance.test_run_embedded import model_processes
from speech import long_speech, write_audio
from transcriber.db import make_engine
from unit.test_systemd_units import ENV_FILE, UNIT_DIR, configure, environment, install, one, read_unit, seconds

pytestmark = pytest.mark.slow


def command_line(exec_start: str, env: dict[str, str], instance: str) -> list[str]:
    """ExecStart as systemd runs it: %i, %H and %% filled in, and a lone ``$NAME`` split into words."""
    specifiers = {"i": instance, "H": socket.gethostname(), "%": "%"}
    words: list[str] = []
    for word in shlex.split(exec_start):
        if re.fullmatch(r"\$\w+", word):
            words += env.get(word[1:], "").split()
        else:
            words.append(re.sub(r"%(.)", lambda m: specifiers[m.group(1)], word))
    return words


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def test_a_stop_of_the_worker_unit_hands_the_running_call_back(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    root, data, inbox, outputs = (tmp_path / name for name in ("root", "data", "inbox", "transcripts"))
    for folder in (root, data, inbox, outputs):
        folder.mkdir()
    install(root, "--data-dir", str(data), "--watch-dir", str(inbox), "--output-dir", str(outputs),
            "--concurrency", "1")  # fmt: skip
    # Settings go in the file the unit names, as an operator writes them; a heartbeat every half second only
    # makes the stop come sooner.
    configure(root, DATABASE_URL=pg_url, CELERY_BROKER_URL=redis_url, WHISPER_MODEL="tiny.en",
              WHISPER_CPU_THREADS="1", HEARTBEAT_SECONDS="0.5", DIARIZE="off")  # fmt: skip
    unit = read_unit(root / UNIT_DIR / "transcriber-worker@.service")
    env = {"PATH": os.environ["PATH"], **environment(unit), "TRANSCRIBER_ENV_FILE": str(root / ENV_FILE.lstrip("/"))}
    command = command_line(one(unit, "Service", "ExecStart"), env, instance="1")
    stop_signal = signal.Signals[one(unit, "Service", "KillSignal")]
    stop_timeout = seconds(one(unit, "Service", "TimeoutStopSec"))

    write_audio(inbox / "long call.wav", long_speech(60))
    subprocess.run([command[0], "watch", "--once"], env=env, check=True, capture_output=True, timeout=120)
    engine = make_engine(pg_url)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(command, env=env, cwd=one(unit, "Service", "WorkingDirectory"), stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    models: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not rows(engine, "SELECT 1 FROM recordings WHERE status = 'processing' AND progress_seconds > 0"):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        # Paused once some of the call is saved: how fast this machine transcribes cannot decide where the stop lands.
        models = model_processes(worker)
        for model in models:
            model.suspend()
        started = time.monotonic()
        os.kill(worker.pid, stop_signal)  # the main process only, as KillMode=mixed sends it
        assert worker.wait(timeout=stop_timeout) == 0, log.read_text()
        took = time.monotonic() - started
        left_behind = [m for m in models if m.is_running() and m.status() != psutil.STATUS_ZOMBIE]
    finally:
        for model in models:
            with contextlib.suppress(psutil.NoSuchProcess):
                model.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    assert not left_behind  # the worker ended its model processes itself
    [(status, retries, progress)] = rows(engine, "SELECT status, retry_count, progress_seconds FROM recordings")
    [(outcome, cause, error)] = rows(engine, "SELECT outcome, cause, error_message FROM attempts")
    engine.dispose()
    assert (status, retries) == ("queued", 0) and progress > 0  # handed back with its progress, no retry spent
    assert (outcome, cause) == ("lost", "interrupted") and error.startswith("Interrupted: the worker shut down")
    assert took < stop_timeout / 3, f"the warm shutdown took {took:.1f}s of TimeoutStopSec={stop_timeout:.0f}"
