"""The ``transcriber`` command: parses, builds the settings once, and calls the code that does the work."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from transcriber.errors import ConfigError, TranscriberError
from transcriber.redact import redact_text
from transcriber.settings import Settings, load_settings

log = logging.getLogger("transcriber")


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        _parser().error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        settings = load_settings()
        _setup_logging(settings)
        return int(args.func(settings, args, extra) or 0)
    except ConfigError as exc:
        print(f"transcriber: configuration error: {exc}", file=sys.stderr)
        return 2
    except TranscriberError as exc:
        print(f"transcriber: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        print(f"transcriber: cannot reach the database: {_first_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _first_line(exc: OperationalError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return redact_text(lines[0] if lines else type(exc).__name__) + " (check DATABASE_URL and that the server is up)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transcriber",
        description="Transcribe recorded calls: watch a folder, queue recordings, run workers.",
        epilog="Settings come from the environment and .env (TRANSCRIBER_ENV_FILE names another file).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="migrate the database to the newest schema").set_defaults(func=_db_upgrade)

    worker = commands.add_parser(
        "worker", help="run a Celery worker (extra arguments go to Celery, e.g. --pool=solo)", add_help=False
    )
    worker.set_defaults(func=_worker, passthrough=True)
    beat = commands.add_parser(
        "beat", help="run Celery beat: stuck rescue and dispatch (run exactly one)", add_help=False
    )
    beat.set_defaults(func=_beat, passthrough=True)

    watch = commands.add_parser("watch", help="register files dropped into WATCH_DIR as queued recordings")
    watch.add_argument("--once", action="store_true", help="scan once and exit")
    watch.set_defaults(func=_watch)

    status = commands.add_parser("status", help="recordings by status, or one recording in detail")
    status.add_argument("recording", nargs="?", help="a recording id (or its first characters)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)
    return parser


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _db_upgrade(settings: Settings, _args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber.migrate import upgrade_to_head

    revision = upgrade_to_head(settings.database_url)
    print(f"database is at revision {revision}")
    return 0


def _worker(settings: Settings, _args: argparse.Namespace, extra: list[str]) -> int:
    from transcriber.celery_app import app, use_settings
    from transcriber.model_store import ensure_available

    ensure_available(settings.whisper_model, settings.whisper_model_dir)  # fail at start, not in every task
    use_settings(settings)
    argv = ["worker", *extra]
    if not any(a.startswith(("--loglevel", "-l")) for a in extra):
        argv.append(f"--loglevel={settings.log_level}")
    if sys.platform == "win32" and not any(a.startswith(("--pool", "-P")) for a in extra):
        argv.append("--pool=solo")  # prefork does not work on Windows; our time limit works on every pool
    app.worker_main(argv)
    return 0


def _beat(settings: Settings, _args: argparse.Namespace, extra: list[str]) -> int:
    from transcriber.celery_app import app, use_settings

    use_settings(settings)
    argv = ["beat", *extra]
    if not any(a.startswith(("--loglevel", "-l")) for a in extra):
        argv.append(f"--loglevel={settings.log_level}")
    app.start(argv)
    return 0


def _watch(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber.celery_app import use_settings
    from transcriber.db import make_engine, make_session_factory
    from transcriber.ingest import Ingester, run_watch_loop
    from transcriber.maintenance import dispatch_one
    from transcriber.tasks import send_transcribe

    use_settings(settings)
    watch_dir = Path(settings.watch_dir)
    if not watch_dir.is_dir():
        raise ConfigError(f"WATCH_DIR={watch_dir} is not a folder: create it or point WATCH_DIR at one")
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)

    def dispatch(recording: Any) -> None:
        dispatch_one(sessions, recording.id, recording.file_name, previous_task_id=None, send=send_transcribe)

    ingester = Ingester(sessions, watch_dir, settle_seconds=settings.watch_settle_seconds, dispatch=dispatch)
    if args.once:  # one look, and a second after the settle time for what was still moving
        count = ingester.scan()
        if ingester.pending:
            time.sleep(settings.watch_settle_seconds)
            count += ingester.scan()
        print(f"registered {count} new recording(s)")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "watching %s (settle %ss, rescan every %ss)",
        watch_dir,
        settings.watch_settle_seconds,
        settings.watch_poll_seconds,
    )
    run_watch_loop(ingester, poll_seconds=settings.watch_poll_seconds, stop=stop)
    engine.dispose()
    return 0


def _status(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber import report
    from transcriber.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        with sessions() as session:
            if args.recording:
                data = report.recording_detail(session, args.recording)
                print(json.dumps(data, indent=2, default=str) if args.json else report.format_detail(data))
            else:
                data = report.summary(session)
                print(json.dumps(data, indent=2, default=str) if args.json else report.format_summary(data))
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
