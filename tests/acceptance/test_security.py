"""Passwords in DATABASE_URL and CELERY_BROKER_URL, the webhook secret and a token in WEBHOOK_URL never reach a log,
an error_message, a webhook's last_error or a command's output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services import PrivateRedis, free_port
from speech import SENTENCES, conversation, write_audio

pytestmark = pytest.mark.slow

DB_SECRET = "pg-Secr3t-1"
BROKER_SECRET = "redis-Secr3t-2"
HOOK_SECRET = "hook-Secr3t-3"
HOOK_TOKEN = "hook-T0ken-4"


def test_passwords_never_reach_logs_errors_or_output(pipeline) -> None:
    server = PrivateRedis(password=BROKER_SECRET)  # a Redis that really checks its password
    db_url = pipeline.env["DATABASE_URL"].replace("postgres@", f"postgres:{DB_SECRET}@")  # trust auth ignores it
    assert DB_SECRET in db_url
    pipeline.env.update(CELERY_BROKER_URL=server.url, DATABASE_URL=db_url)
    # A receiver that is down: every delivery fails, and its error is logged and kept (with the URL scrubbed).
    hook = f"http://user:{HOOK_TOKEN}@127.0.0.1:{free_port()}/hooks/{HOOK_TOKEN}?token={HOOK_TOKEN}"
    pipeline.env.update(
        WEBHOOK_URL=hook, WEBHOOK_SECRET=HOOK_SECRET, WEBHOOK_BACKOFF_SECONDS="0.2", WEBHOOK_BACKOFF_MAX_SECONDS="0.5"
    )
    write_audio(pipeline.watch_dir / "good.m4a", conversation(SENTENCES[:1]))
    (pipeline.watch_dir / "corrupt.m4a").write_bytes(os.urandom(3000))
    try:
        pipeline.start("worker", "--pool=solo")  # before Redis is up: its retry lines name the broker
        pipeline.wait_for("the broker retry line", lambda: "Cannot connect to redis" in pipeline.full_log("worker"))
        server.start()
        pipeline.start("beat")
        pipeline.start("watch")
        pipeline.wait_for("both files", lambda: pipeline.all_settled(2))
        pipeline.wait_for(
            "a failed webhook delivery",
            lambda: pipeline.query("SELECT 1 FROM webhook_events WHERE attempts >= 2 AND last_error IS NOT NULL"),
        )
        cli = str(Path(sys.executable).parent / "transcriber")
        outputs = [
            subprocess.run([cli, *args], env=pipeline.env, capture_output=True, text=True, timeout=120)
            for args in (
                ["status"],
                ["status", "--json"],
                ["failed"],
                ["doctor"],
                ["doctor", "--json"],
                ["webhooks"],
                ["webhooks", "--json"],
                ["webhooks", "deliver", "--once"],
            )  # fmt: skip
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
        + [str(r) for r in pipeline.query("SELECT last_error, body FROM webhook_events")]
    )
    assert "redis://:**@127.0.0.1" in seen  # the URLs are there, masked
    assert DB_SECRET not in seen and BROKER_SECRET not in seen
    assert "could not connect" in seen and "http://127.0.0.1:" in seen  # the delivery failed, and said so
    assert HOOK_TOKEN not in seen and HOOK_SECRET not in seen
