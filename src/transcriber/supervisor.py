"""``transcriber run``: watcher, worker and beat together on one machine.

The worker and beat run as child processes (``transcriber worker`` / ``beat``) so
each keeps Celery's own process model; the watcher runs here. Ctrl-C stops them
all; queued work stays in the database and the next start picks it up.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from transcriber.settings import Settings

log = logging.getLogger(__name__)


def child_command(command: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "transcriber.cli", command, *args]


def service_commands(settings: Settings) -> dict[str, list[str]]:
    """The worker and beat command lines for a one-machine deployment.

    The worker runs one model process per core (``runner.default_concurrency``): in threads, which every
    platform has, each thread with a model process of its own; one core gets solo, as before.
    """
    from transcriber.runner import default_concurrency

    processes = default_concurrency(settings.whisper_device)
    worker = ["--pool=solo", "--concurrency=1"] if processes == 1 else ["--pool=threads", f"--concurrency={processes}"]
    if settings.embedded_broker:  # the folder broker has no broadcast for these chatty features
        worker += ["--without-mingle", "--without-gossip"]
    schedule = settings.data_dir / "celerybeat-schedule"
    return {
        "worker": child_command("worker", *worker),
        "beat": child_command("beat", f"--schedule={schedule}"),
    }


def start_child(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    kwargs: dict[str, object] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True  # Ctrl-C reaches us; we stop the children in order
    return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]


def stop_signal(platform: str | None = None) -> str:
    """The signal a child receives when ``stop_child`` asks it to stop; the worker and beat make it a clean stop.

    Windows: SIGBREAK, which CTRL_BREAK_EVENT arrives as; Ctrl+C cannot target a process group, and each child
    has a group of its own (``start_child``), so the worker's event does not reach beat. The model processes a
    worker starts are not attached to its console (CREATE_NO_WINDOW, runner.py): no console event reaches them,
    and the worker ends them after handing its calls back. Elsewhere: SIGTERM.
    """
    return "SIGBREAK" if (platform or sys.platform) == "win32" else "SIGTERM"


def stop_child(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Ask politely (warm shutdown), then insist."""
    if proc.poll() is not None:
        return
    if stop_signal() == "SIGBREAK":
        proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
    else:
        proc.send_signal(getattr(signal, stop_signal()))
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("pid %s did not stop within %.0fs; killing it", proc.pid, grace)
        if sys.platform != "win32":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=30)


def supervise(settings: Settings, watch: threading.Thread, stop: threading.Event, *, grace: float = 30.0) -> int:
    """Start worker and beat, run until ``stop`` is set or a child dies, then stop all."""
    logs = settings.data_dir / "logs"
    children = {name: start_child(argv, logs / f"{name}.log") for name, argv in service_commands(settings).items()}
    for name, proc in children.items():
        log.info("started %s (pid %s), log: %s", name, proc.pid, logs / f"{name}.log")
    watch.start()
    code = 0
    try:
        while not stop.is_set():
            for name, proc in children.items():
                if proc.poll() is not None:
                    log.error("%s exited with code %s; see %s", name, proc.returncode, logs / f"{name}.log")
                    code = 1
                    stop.set()
            stop.wait(1.0)
    finally:
        stop.set()
        watch.join(timeout=30)
        for proc in reversed(children.values()):  # beat first: it would dispatch to a worker that is stopping
            stop_child(proc, grace)
        log.info("stopped")
    return code
