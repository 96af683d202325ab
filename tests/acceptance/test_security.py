"""Passwords in DATABASE_URL and CELERY_BROKER_URL never reach a log, an error_message or a command's output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services import PrivateRedis
from speech import SENTENCES, conversation, write_audio

pytestmark = pytest.mark.slow

DB_SECRET = "pg-Secr3t-1"
BROKER_SECRET = "redis-Secr3t-2"


def test_passwords_never_reach_logs_errors_or_output(pipeline) -> None:
    server = PrivateRedis(password=BROKER_SECRET)  # a Redis that really checks its password
    db_url = pipeline.env["DATABASE_URL"].replace("postgres@", f"postgres:{DB_SECRET}@")  # trust auth ignores it
    assert DB_SECRET in db_url
    pipeline.env.update(CELERY_BROKER_URL=server.url, DATABASE_URL=db_url)
    write_audio(pipeline.watch_dir / "good.m4a", conversation(SENTENCES[:1]))
    (pipeline.watch_dir / "corrupt.m4a").write_bytes(os.urandom(3000))
    try:
        pipeline.start("worker", "--pool=solo")  # before Redis is up: its retry lines name the broker
        pipeline.wait_for("the broker retry line", lambda: "Cannot connect to redis" in pipeline.full_log("worker"))
        server.start()
        pipeline.start("beat")
        pipeline.start("watch")
        pipeline.wait_for("both files", lambda: pipeline.all_settled(2))
        cli = str(Path(sys.executable).parent / "transcriber")
        outputs = [
            subprocess.run([cli, *args], env=pipeline.env, capture_output=True, text=True, timeout=120)
            for args in (["status"], ["status", "--json"], ["failed"], ["doctor"], ["doctor", "--json"])
        ]
    finally:
        pipeline.stop_all()
        server.stop()
    assert {s[0] for s in pipeline.statuses().values()} == {"completed", "failed"}
    seen = "\n".join(
        [pipeline.logs(), *(pipeline.full_log(c) for c in ("worker", "beat", "watch"))]
        + [o.stdout + o.stderr for o in outputs]
        + [str(r) for r in pipeline.query("SELECT error_message FROM recordings")]
        + [str(r) for r in pipeline.query("SELECT error_message FROM attempts")]
    )
    assert "redis://:**@127.0.0.1" in seen  # the URLs are there, masked
    assert DB_SECRET not in seen and BROKER_SECRET not in seen
