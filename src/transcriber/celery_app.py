"""The Celery app: ``celery -A transcriber.celery_app worker|beat|flower``.

Nothing is read at import: the configuration is built from the settings the first
time Celery asks for it (``add_defaults`` with a callable is lazy).
"""

from __future__ import annotations

import sys
from typing import Any

import click
from celery import Celery
from celery.signals import beat_init, import_modules
from kombu import Queue

from transcriber.errors import ConfigError
from transcriber.retry import visibility_timeout_for
from transcriber.settings import Settings, load_settings

TRANSCRIBE_QUEUE = "transcriber"
CONTROL_QUEUE = "transcriber.control"

app = Celery("transcriber", include=["transcriber.tasks"])

_settings: Settings | None = None


def use_settings(settings: Settings) -> None:
    """Entry points that already built the settings hand them over here."""
    global _settings
    _settings = settings


def current_settings() -> Settings:
    """The settings of this process, built once (one line and exit 2 if invalid)."""
    global _settings
    if _settings is None:
        try:
            _settings = load_settings()
        except ConfigError as exc:
            print(f"transcriber: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if _settings.embedded_broker:  # only the Celery CLI gets here: every transcriber command hands its own
            print(
                f"transcriber: no CELERY_BROKER_URL in the environment or .env: using the folder broker under "
                f"{_settings.broker_dir}; set CELERY_BROKER_URL=redis://... (or TRANSCRIBER_ENV_FILE, or celery -b)",
                file=sys.stderr,
            )
    return _settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; see the README's "Celery and Redis" section."""
    chosen = settings.broker_visibility_timeout_seconds  # an operator's choice (tests use it to force redelivery)
    visibility = chosen or visibility_timeout_for(settings.task_timeout_seconds, settings.task_timeout_realtime_factor)
    transport_options: dict[str, Any] = {"visibility_timeout": visibility}
    if chosen:  # kombu looks for expired messages only every 10 x 10 s by default; look about twice per timeout
        transport_options |= {"unacked_restore_interval": max(1, min(10, chosen // 2)), "unacked_restore_throttle": 1}
    if settings.embedded_broker:
        queue_dir = settings.broker_dir / "queue"
        control_dir = settings.broker_dir / "control"
        for folder in (queue_dir, control_dir):
            folder.mkdir(parents=True, exist_ok=True)
        transport_options = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
            # Kombu polls the folder once a second by default: up to a second per file between its
            # registration and its claim (bench/latency.py). A tenth of a second costs a few listdirs.
            "polling_interval": 0.1,
        }
    interval = settings.cleanup_interval_seconds
    return {
        "broker_url": settings.celery_broker_url,
        # Kombu reads the visibility timeout from each of these (consumer, producer, results).
        "broker_transport_options": transport_options,
        "result_backend_transport_options": transport_options,
        "visibility_timeout": visibility,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        # Our own time limit is enforced by the model runner on every pool.
        "task_time_limit": None,
        "task_soft_time_limit": None,
        # One message at a time per process, acknowledged after the attempt: a worker
        # never sits on messages for recordings it is not transcribing.
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        "worker_prefetch_multiplier": 1,
        # Flower shows every run without -E.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "task_default_queue": TRANSCRIBE_QUEUE,
        "task_queues": [Queue(TRANSCRIBE_QUEUE), Queue(CONTROL_QUEUE)],
        "task_routes": {
            "transcriber.cleanup_stuck": {"queue": CONTROL_QUEUE},
            "transcriber.dispatch_queued": {"queue": CONTROL_QUEUE},
        },
        "beat_scheduler": "transcriber.beat:MaintenanceScheduler",
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),  # not the working folder
        "beat_schedule": {
            "cleanup-stuck": {
                "task": "transcriber.cleanup_stuck",
                "schedule": interval,
                "options": {"expires": interval},
            },
            "dispatch-queued": {
                "task": "transcriber.dispatch_queued",
                "schedule": settings.dispatch_interval_seconds,
                "options": {"expires": settings.dispatch_interval_seconds},
            },
        },
    }


app.add_defaults(lambda: celery_config(current_settings()))


@beat_init.connect
def _check_folders_as_this_account(**_: Any) -> None:
    """Beat's folder (DATA_DIR: its schedule), checked as the account it runs as (``doctor --as-service``)."""
    from transcriber import selfcheck

    selfcheck.report(current_settings(), role="beat")


@beat_init.connect
def _stop_cleanly_on_the_supervisors_signal(**_: Any) -> None:
    """``transcriber run`` stops beat with ``supervisor.stop_signal()``: SIGBREAK on Windows, which Celery's beat
    does not handle (it would die without saving its schedule or removing its row in service_runs). Give it the
    handler Celery's beat has installed for SIGINT by now: save the schedule, close, exit. Elsewhere SIGTERM,
    which has that handler already."""
    import signal

    from celery import platforms

    from transcriber.supervisor import stop_signal

    handler = signal.getsignal(signal.SIGINT)
    if getattr(handler, "__name__", "") == "_sync":  # celery.apps.beat's; not beat embedded in a worker (-B)
        platforms.signals[stop_signal()] = handler


@beat_init.connect
def _start_webhook_delivery(**_: Any) -> None:
    """Beat, the one process per deployment, delivers the webhook outbox in a thread beside rescue and dispatch.

    Workers never POST: a slow or dead receiver holds up this thread only (each POST within
    WEBHOOK_TIMEOUT_SECONDS), never a transcription, nor beat's own schedule.
    """
    settings = current_settings()
    if not settings.webhooks_enabled:
        return
    from transcriber.tasks import maintenance_sessions  # beat's engine, created in this process
    from transcriber.webhooks import start_delivery_thread

    start_delivery_thread(maintenance_sessions(), settings)


# ---------------------------------------------------------------- Flower
# 'celery -A transcriber.celery_app flower' and 'transcriber flower' both pass here. Flower 2 reads its options
# from its command line, FLOWER_* variables and flowerconfig.py, never from the app's conf, and parses them
# before it builds its web application, which imports the app's task modules: at that import (the
# import_modules signal) the options are final and nothing listens yet.

INSECURE_FLOWER = "--insecure-no-auth"
# The file name (the task's kwargs) and the outcome (Result) in the task list. A running call's task-progress
# events put it in state PROGRESS, and their "result" field ("15.0% (90 of 600.0 s)") shows in Result.
FLOWER_TASKS_COLUMNS = "name,uuid,state,kwargs,result,received,started,runtime,worker"
_FLOWER_DEFAULT_COLUMNS = "name,uuid,state,received,runtime,worker"  # Flower 2's own default


def secure_flower(options: Any, settings: Settings, *, insecure: bool) -> str | None:
    """Put our defaults on Flower's parsed ``options``; return why it must not start, or ``None``.

    127.0.0.1 unless an address (or a unix socket) was given, since Flower's default is every interface;
    FLOWER_BASIC_AUTH from the settings (.env included, which Flower does not read); and no start without
    basic auth or OAuth unless ``--insecure-no-auth`` was asked for.
    """
    if not options.address and not options.unix_socket:
        options.address = "127.0.0.1"
    basic = [pair for pair in settings.flower_basic_auth.get_secret_value().split(",") if pair.strip()]
    if basic and not options.basic_auth:
        options.basic_auth = basic
    if options.tasks_columns == _FLOWER_DEFAULT_COLUMNS:
        options.tasks_columns = FLOWER_TASKS_COLUMNS
    if options.basic_auth or options.auth or insecure:
        return None
    return (
        "Flower needs authentication: set FLOWER_BASIC_AUTH=user:password in .env, pass Flower's OAuth "
        f"options (--auth=... with FLOWER_OAUTH2_* variables), or start it with {INSECURE_FLOWER}"
    )


@import_modules.connect
def _secure_flower(**_: Any) -> None:
    context = click.get_current_context(silent=True)
    if context is None or context.command.name != "flower":  # a worker, beat, inspect ...
        return
    from flower.options import options  # Flower's (tornado's) options, parsed by now

    problem = secure_flower(
        options, current_settings(), insecure=INSECURE_FLOWER in context.params.get("tornado_argv", ())
    )
    if problem:
        print(f"transcriber: configuration error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    from transcriber import selfcheck

    selfcheck.report(current_settings(), role="flower")
