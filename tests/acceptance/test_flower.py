"""Flower, secured: anonymous requests are refused, an operator sees every run with its recording and file."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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
