"""What only the services themselves can tell: the folders as their own account, and how many beats run.

Real ``transcriber watch`` and ``transcriber beat`` processes (no model: a few seconds each).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from transcriber.doctor import check_beat, check_folders
from transcriber.settings import Settings
from transcriber.tables import utcnow

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")
NOBODY = 65534
# The service's account, as this test makes it: root without the capabilities that let root past a folder's
# rights (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). Another uid would need the checkout, the venv and the Python
# it links to reachable by that uid, which a CI clone in a private folder is not.
AS_SERVICE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() != 0, reason="drops root's capabilities: needs root")
def test_a_folder_the_services_account_cannot_list_fails_doctor_as_service(pipeline: Any) -> None:
    """The operator lists WATCH_DIR, the watcher's account cannot: plain doctor passes, --as-service fails."""
    os.chown(pipeline.watch_dir, NOBODY, NOBODY)
    pipeline.watch_dir.chmod(0o700)  # someone else's alone, like a share only its owners may read
    data = pipeline.env["DATA_DIR"] = str(pipeline.tmp / "data")
    pipeline.start("watch", wrap=AS_SERVICE)
    report = Path(data) / "service-checks" / f"watcher-{socket.gethostname()}.json"
    pipeline.wait_for("the watcher's report", report.exists, timeout=60)
    pipeline.stop_all()

    done = subprocess.run([TRANSCRIBER, "doctor", "--as-service", "--json"], env=pipeline.env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    found = {(f["role"], f["name"]): f for f in json.loads(done.stdout)}
    watch = found["watcher", "WATCH_DIR"]
    assert (watch["status"], watch["account"]) == ("fail", "root")
    assert watch["detail"].startswith(f"{pipeline.watch_dir}: cannot list it as root (Permission denied): give "
                                      "root read rights on it")  # fmt: skip
    assert (found["watcher", "DATA_DIR"]["status"], found["worker", "report"]["status"]) == ("ok", "warn")
    text = subprocess.run([TRANSCRIBER, "doctor", "--as-service"], env=pipeline.env, capture_output=True, text=True,
                          timeout=60).stdout  # fmt: skip
    assert f"watcher on {socket.gethostname()} (pid " in text and "checked as root" in text
    assert f"ERROR transcriber.selfcheck: watcher WATCH_DIR: {watch['detail']}" in pipeline.full_log("watch")

    plain = {c.name: c for c in check_folders(Settings(_env_file=None, **settings_of(pipeline.env)))}
    assert plain["WATCH_DIR"].status == "ok" and plain["WATCH_DIR"].detail.endswith("listed as root")  # as before


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
