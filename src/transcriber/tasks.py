"""Celery tasks: thin shells over ``worker.run_attempt`` and ``maintenance``."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any

from celery import Task
from celery.signals import (
    after_setup_logger,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from transcriber import maintenance
from transcriber.broker import live_task_ids
from transcriber.celery_app import CONTROL_QUEUE, TRANSCRIBE_QUEUE, app, current_settings
from transcriber.lifecycle import RetryPolicy
from transcriber.tables import AttemptOutcome, utcnow
from transcriber.worker import WorkerContext

log = logging.getLogger(__name__)

_context: WorkerContext | None = None
_context_pid: int | None = None
_context_lock = threading.Lock()
_concurrency = 1


_pool = "prefork"


@worker_init.connect
def _remember_concurrency(sender: Any = None, **_: Any) -> None:
    """How many tasks this worker runs at once (the CPU threads are divided among them), and in what pool."""
    global _concurrency, _pool
    _concurrency = int(getattr(sender, "concurrency", 1) or 1)
    _pool = pool_name(getattr(sender, "pool_cls", None))


def pool_name(pool: Any) -> str:
    """Celery's pool as its option names it: by then the CLI has made ``threads`` the class
    ``celery.concurrency.thread.TaskPool`` (and ``solo`` ``celery.concurrency.solo.TaskPool``)."""
    name = pool if isinstance(pool, str) else f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"
    name = name.lower()
    if "solo" in name:
        return "solo"
    if "thread" in name:
        return "threads"
    return next((p for p in ("eventlet", "gevent") if p in name), "prefork")


@worker_init.connect
def _refuse_a_missing_gpu(**_: Any) -> None:
    """``celery -A transcriber.celery_app worker`` with WHISPER_DEVICE=cuda on a machine without one: stop now."""
    import sys

    from transcriber.errors import ConfigError
    from transcriber.model_store import ensure_device

    try:
        ensure_device(current_settings().whisper_device)
    except ConfigError as exc:
        print(f"transcriber: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


@worker_init.connect
def _wait_for_database(**_: Any) -> None:
    """Take no message before the database answers (a server that boots after the worker)."""
    from transcriber.db import make_engine, make_session_factory, wait_for_database

    engine = make_engine(current_settings().database_url)
    try:
        wait_for_database(make_session_factory(engine), threading.Event())
    finally:
        engine.dispose()


@worker_ready.connect
def _warm_in_process(**_: Any) -> None:
    """solo and threads run tasks in this process: load their models now (in the background), so the first file
    finds them loaded; a task that comes first loads its own and this makes only the ones still missing."""
    if _pool in ("solo", "threads"):
        worker_context().warm(_concurrency if _pool == "threads" else 1)


@worker_ready.connect
def _check_folders_as_this_account(**_: Any) -> None:
    """The worker's folders, checked as the account it runs as (``transcriber doctor --as-service``)."""
    from transcriber import selfcheck

    selfcheck.report(current_settings(), role="worker")


@worker_ready.connect
def _stop_warmly_on_the_supervisors_signal(sender: Any = None, **_: Any) -> None:
    """``transcriber run`` stops this worker with ``supervisor.stop_signal()``: make it Celery's warm shutdown.

    On Windows that is SIGBREAK (CTRL_BREAK_EVENT, the one console event that reaches a process group), which
    Celery does not handle: Python's default would end the worker at once, and its running recording would wait
    for the stuck rescue, spending a retry. Celery has installed its own handlers by now (``worker_ready`` comes
    after ``install_platform_tweaks``, in the main thread); elsewhere this is SIGTERM, as Celery has it already.
    """
    import signal

    from celery.apps.worker import install_worker_term_handler

    from transcriber.supervisor import stop_signal

    name = stop_signal()
    worker = getattr(sender, "controller", None)  # worker_ready's sender is the consumer
    if worker is None:
        return
    install_worker_term_handler(worker, sig=name)  # Celery's own SIGTERM handler: a warm shutdown
    handler = signal.getsignal(getattr(signal, name)) if hasattr(signal, name) else None
    if getattr(handler, "__name__", "").startswith("worker_"):
        log.info("%s (how 'transcriber run' stops this worker) is a warm shutdown: running calls are handed back", name)
    else:  # Celery's Signals ignores a signal this platform lacks, and one set outside the main thread
        log.warning("%s is not handled: a stop by 'transcriber run' ends running calls without handing them back", name)


def worker_context() -> WorkerContext:
    """This process's context, created on first use after any fork."""
    global _context, _context_pid
    with _context_lock:
        if _context is None or _context_pid != os.getpid():
            _context = WorkerContext.create(current_settings(), concurrency=_concurrency, send=send_transcribe)
            _context_pid = os.getpid()
        return _context


@after_setup_logger.connect
def _quiet_folder_broker(**_: Any) -> None:
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # "No hostname was supplied" (folder broker)


@worker_process_init.connect
def _forget_inherited_context(**_: Any) -> None:
    global _context, _context_pid
    if _context_pid != os.getpid():  # solo sends this signal too, in the worker's own process
        _context, _context_pid = None, None  # never use the parent's pool or model process
    if _pool == "prefork":
        worker_context().warm()  # a child runs one task at a time: its model loads now, not with the first file


@worker_shutting_down.connect
def _hand_back_running_work(**_: Any) -> None:
    """Warm shutdown (Ctrl-C, service stop): running attempts hand their recording back.

    Celery would otherwise wait for a transcription that may take an hour. This runs
    in the worker's main process, which is where solo and threads pools run tasks.
    """
    if _context is not None and _context_pid == os.getpid():
        _context.stopping.set()


@worker_process_shutdown.connect
@worker_shutdown.connect
def _close_context(**_: Any) -> None:
    global _context
    if _context is not None and _context_pid == os.getpid():
        _context.close()
        _context = None


def send_transcribe(recording_id: uuid.UUID, task_id: str, file_name: str, piece: int | None = None) -> None:
    """Send one transcription message: the id (and piece) is what counts; the file name is for Flower and logs."""
    kwargs: dict[str, Any] = {"file": file_name}
    if piece is not None:
        kwargs["piece"] = piece  # Flower shows it among the task's arguments
    transcribe.apply_async(args=[str(recording_id)], kwargs=kwargs, task_id=task_id, queue=TRANSCRIBE_QUEUE)


class AttemptFailed(Exception):
    """Raised after the failure is recorded, so Flower counts the run as failed.

    Listed in the task's ``throws``: Celery logs it as one line, without a traceback.
    """


@app.task(name="transcriber.transcribe", bind=True, throws=(AttemptFailed,))
def transcribe(self: Task, recording_id: str, file: str | None = None, piece: int | None = None) -> str:
    """Run one attempt of one recording, or of one ``piece`` of a split call (``file`` is for Flower and logs)."""

    def report(done: float, total: float | None) -> None:
        meta: dict[str, Any] = {"recording_id": recording_id, "done_seconds": round(done, 1), "duration_seconds": total}
        if piece is not None:
            meta["piece"] = piece
        if total:
            meta["percent"] = round(100 * done / total, 1)
        # Flower keeps an event's "result": its task list then shows the progress in the Result column.
        meta["result"] = f"{meta.get('percent', '?')}% ({meta['done_seconds']:.0f} of {total or '?'} s)"
        self.send_event("task-progress", **meta)  # a broker blip here is logged by run_attempt, never fatal

    from transcriber.worker import run_attempt

    outcome = run_attempt(
        worker_context(), uuid.UUID(recording_id), task_id=self.request.id, on_progress=report, piece=piece
    )
    if outcome.outcome not in (None, AttemptOutcome.SUCCEEDED):
        raise AttemptFailed(str(outcome))
    if outcome.outcome is None:
        return str(outcome)
    return f"completed {recording_id}" if piece is None else f"completed piece {piece} of {recording_id}"


_maintenance: tuple[int, Any] | None = None


def maintenance_sessions() -> Any:
    """Beat's jobs need the database and the broker only: an engine of their own, never a model or a worker context."""
    global _maintenance
    from transcriber.db import make_engine, make_session_factory

    with _context_lock:
        if _maintenance is None or _maintenance[0] != os.getpid():
            _maintenance = (os.getpid(), make_session_factory(make_engine(current_settings().database_url)))
        return _maintenance[1]


@app.task(name="transcriber.cleanup_stuck")
def cleanup_stuck() -> str:
    """Requeue or fail recordings whose worker stopped heartbeating."""
    settings = current_settings()
    rescued = maintenance.cleanup_stuck(
        maintenance_sessions(),
        now=utcnow(),
        stuck_timeout=settings.stuck_timeout_seconds,
        policy=RetryPolicy.from_settings(settings),
        interval=settings.cleanup_interval_seconds,
        notify=settings.webhooks_enabled,
    )
    return "skipped" if rescued is None else f"rescued {len(rescued)}"


@app.task(name="transcriber.dispatch_queued")
def dispatch_queued() -> str:
    """Send every due queued recording that has no live task (retries whose backoff ended, SQL resets)."""
    settings = current_settings()
    sent = maintenance.dispatch_queued(
        maintenance_sessions(),
        now=utcnow(),
        live_task_ids=live_task_ids(app, [TRANSCRIBE_QUEUE, CONTROL_QUEUE]),
        send=send_transcribe,
        interval=settings.dispatch_interval_seconds,
        send_grace=min(30.0, 2 * settings.cleanup_interval_seconds),
    )
    return "skipped" if sent is None else f"sent {sent}"
