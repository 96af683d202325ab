"""What only the services themselves can tell: how many beats run.

Real ``transcriber beat`` processes (no model: a few seconds).
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from transcriber.doctor import check_beat
from transcriber.settings import Settings
from transcriber.tables import utcnow


def settings_of(env: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}


def test_doctor_warns_while_two_beats_tick_and_not_once_one_stopped(pipeline: Any) -> None:
    (pipeline.tmp / "second").mkdir()
    second = type(pipeline)(pipeline.tmp / "second", pipeline.env["DATABASE_URL"], pipeline.env["CELERY_BROKER_URL"])
    try:
        first_beat = pipeline.start("beat")
        other_beat = second.start("beat")  # its own schedule file, as on another machine
        beats = "SELECT name FROM service_runs WHERE name LIKE 'beat %'"
        pipeline.wait_for("both beats' ticks", lambda: len(pipeline.query(beats)) == 2, timeout=60)
        # Beats tick every second here; doctor looks back two ticks of its own settings' (10 s): a beat slowed
        # down by a busy machine still counts.
        settings = Settings(
            _env_file=None,
            **settings_of(pipeline.env) | {"cleanup_interval_seconds": "5", "dispatch_interval_seconds": "5"},
        )
        check = check_beat(settings, pipeline.sessions, utcnow())
        assert check.status == "warn", check
        host = socket.gethostname()
        assert f"pid {first_beat.pid} on {host}" in check.detail and f"pid {other_beat.pid} on {host}" in check.detail
        assert "run exactly one beat per deployment" in check.detail

        os.killpg(other_beat.pid, signal.SIGTERM)  # a clean stop removes its row: no waiting out the window
        assert other_beat.wait(timeout=30) == 0
        assert [r[0] for r in pipeline.query(beats)] == [f"beat {host} {first_beat.pid}"]
        check = check_beat(settings, pipeline.sessions, utcnow())
        assert check.status == "ok", check
    finally:
        second.stop_all(graceful=False)
