"""Flower, secured: anonymous requests are refused, an operator sees every run with its recording and file."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from celery import Celery

from speech import SENTENCES, conversation, write_audio

pytestmark = pytest.mark.slow

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, auth: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def test_flower_requires_auth_and_shows_runs(pipeline) -> None:
    port = free_port()
    auth = "ops:correct horse battery"
    pipeline.start("worker", "--concurrency=1")
    pipeline.start("beat")
    pipeline.start("watch")
    pipeline.start("flower", f"--port={port}", FLOWER_BASIC_AUTH=auth)
    base = f"http://127.0.0.1:{port}"
    pipeline.wait_for("Flower to listen", lambda: get(f"{base}/healthcheck")[0] in (200, 401))

    name = "Call recording +18134353769_200301_171119.m4a"
    write_audio(pipeline.watch_dir / name, conversation(SENTENCES[:1]))
    pipeline.wait_for("the call", lambda: pipeline.all_settled(1))
    [(recording_id,)] = pipeline.query("SELECT id FROM recordings")

    assert get(f"{base}/api/tasks")[0] == 401
    assert get(f"{base}/api/tasks", "ops:wrong")[0] == 401

    def transcribe_runs() -> list[dict]:
        status, body = get(f"{base}/api/tasks?taskname=transcriber.transcribe", auth)
        runs = list(json.loads(body).values()) if status == 200 else []
        return [r for r in runs if r.get("state") == "SUCCESS"]

    [run] = pipeline.wait_for("Flower to see the run", transcribe_runs)
    assert str(recording_id) in run["args"] and name in run["kwargs"]
    assert "correct horse" not in pipeline.logs()


def test_flower_refuses_to_start_without_auth(pipeline) -> None:
    done = subprocess.run(
        [TRANSCRIBER, "flower"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "FLOWER_BASIC_AUTH" in done.stderr


# ---------------------------------------------------------------- 'celery -A transcriber.celery_app flower'

CELERY = str(Path(sys.executable).parent / "celery")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a process in its own group; every one is stopped at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"process-{len(procs)}.log", "wb")  # noqa: SIM115 - the child's for its lifetime
        procs.append(subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))  # fmt: skip
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def plain_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **extra}


def wait_for(what: str, check: Callable[[], Any], proc: subprocess.Popen[bytes], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        assert proc.poll() is None, f"exited with {proc.returncode} while waiting for {what}"
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def test_celery_flower_refuses_to_start_without_auth(tmp_path: Path, redis_url: str) -> None:
    done = subprocess.run([CELERY, "-A", "transcriber.celery_app", "flower", f"--port={free_port()}"],
                          env=plain_env(tmp_path, CELERY_BROKER_URL=redis_url), cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("transcriber: configuration error: Flower needs authentication: set FLOWER_BASIC_AUTH")


def test_celery_flower_listens_on_loopback_with_auth_from_dot_env(
    tmp_path: Path, redis_url: str, started: Callable[..., subprocess.Popen[bytes]]
) -> None:
    """The README's Celery command, run in a folder whose .env holds the password (Flower reads no .env)."""
    (tmp_path / ".env").write_text(f"CELERY_BROKER_URL={redis_url}\nFLOWER_BASIC_AUTH=ops:s3cret pass\n")
    port = free_port()
    proc = started([CELERY, "-A", "transcriber.celery_app", "flower", f"--port={port}"], plain_env(tmp_path), tmp_path)
    base = f"http://127.0.0.1:{port}"
    wait_for("Flower to listen", lambda: get(f"{base}/healthcheck")[0] in (200, 401), proc)

    listening = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections("inet") if c.status == "LISTEN"}
    assert listening == {"127.0.0.1"}  # Flower's own default is every interface, IPv4 and IPv6
    assert get(f"{base}/tasks")[0] == 401
    status, page = get(f"{base}/tasks", "ops:s3cret pass")
    assert status == 200 and ">kwargs<" in page and ">Result<" in page

    # A transcription run as a worker reports it: Flower lists it with the file name (the task's kwargs).
    name = "Call recording +18134353769_200301_171119.m4a"
    app = Celery("fake-worker", broker=redis_url, set_as_current=False)

    def listed() -> list[dict[str, Any]]:
        with app.connection_for_write() as conn:  # events reach a Flower that listens: send until it has
            dispatcher = app.events.Dispatcher(conn, hostname="celery@fake-worker", enabled=True)
            dispatcher.send("task-received", uuid="t-1", name="transcriber.transcribe", args="['r-1']",
                            kwargs=repr({"file": name}), retries=0, root_id="t-1", parent_id=None)  # fmt: skip
            dispatcher.send("task-started", uuid="t-1")
            dispatcher.flush()
        query = "draw=1&start=0&length=10&order%5B0%5D%5Bcolumn%5D=0&columns%5B0%5D%5Bdata%5D=name"
        status, body = get(f"{base}/tasks/datatable?{query}", "ops:s3cret pass")
        return json.loads(body)["data"] if status == 200 else []

    [row] = wait_for("Flower to list the run", listed, proc)
    assert name in row["kwargs"] and row["name"] == "transcriber.transcribe"
    assert "s3cret" not in (tmp_path / "process-0.log").read_text(errors="replace")


def test_flower_help_is_help(tmp_path: Path) -> None:
    done = subprocess.run([TRANSCRIBER, "flower", "--help"], env=plain_env(tmp_path, TASK_TIMEOUT_SECONDS="abc"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert "--insecure-no-auth" in done.stdout and "FLOWER_BASIC_AUTH" in done.stdout
