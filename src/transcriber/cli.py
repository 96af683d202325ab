"""The ``transcriber`` command: parses, builds the settings once, calls the code that does the work, prints.

Every error a person can act on is one line on stderr and a non-zero exit code;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from transcriber.errors import ConfigError, TranscriberError
from transcriber.redact import redact_text
from transcriber.settings import Settings, load_settings
from transcriber.tables import RecordingStatus

if TYPE_CHECKING:
    from transcriber.report import CallFilter

log = logging.getLogger("transcriber")

Handler = Callable[[Settings, argparse.Namespace, list[str]], int]


# What a shell reports for a command whose reader went away (``transcriber status | head``), like coreutils.
EXIT_BROKEN_PIPE = 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:  # also after argparse's exit: a reader that left shows here, not as "Exception ignored" at exit
            sys.stdout.flush()
    except BrokenPipeError:
        # Nothing more can be shown; point stdout at devnull so the interpreter's last flush is quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        settings = load_settings()
        _setup_logging(settings, args.debug)
        return int(args.func(settings, args, extra) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:
        if args.debug:
            raise
        print(f"transcriber: {_explain(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1


def _explain(exc: BaseException) -> str:
    """One line for a person: what is wrong and what to do."""
    if isinstance(exc, ConfigError):
        return f"configuration error: {exc}"
    if isinstance(exc, TranscriberError):
        return str(exc)
    if isinstance(exc, ProgrammingError) and "does not exist" in str(exc.orig):
        return "the database has no transcriber tables yet: run 'transcriber db upgrade'"
    if isinstance(exc, OperationalError):
        if "no such table" in str(exc.orig):
            return "the database has no transcriber tables yet: run 'transcriber db upgrade'"
        return f"cannot reach the database: {_first_line(exc.orig or exc)} (check DATABASE_URL and that it is up)"
    from kombu.exceptions import OperationalError as BrokerError

    if isinstance(exc, BrokerError):
        return f"cannot reach the broker: {_first_line(exc)} (check CELERY_BROKER_URL and that it is up)"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    return f"unexpected error: {type(exc).__name__}: {_first_line(exc)} (run with --debug for details)"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return redact_text(lines[0] if lines else type(exc).__name__)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser = argparse.ArgumentParser(
        prog="transcriber",
        description="Transcribe recorded calls: watch a folder, queue recordings, run workers, repair failures.",
        epilog="Settings come from the environment and .env (TRANSCRIBER_ENV_FILE names another file).",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Handler, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[common], **kwargs)
        sub.set_defaults(func=func)
        return sub

    add("run", _run, "watcher, worker and beat together on this machine (Ctrl-C stops them)")
    db = add("db", _db_upgrade, "database schema")
    db.add_argument("action", choices=["upgrade", "reindex"],
                    help="upgrade: migrate to the newest schema; reindex: rebuild the search index (SQLite: after "
                         "a VACUUM)")  # fmt: skip
    for name, func, text in (
        ("worker", _worker, "run a Celery worker (extra arguments go to Celery, e.g. --pool=solo; --help: Celery's)"),
        ("beat", _beat, "run Celery beat: stuck rescue and dispatch (run exactly one; schedule file in DATA_DIR)"),
    ):
        add(name, func, text, add_help=False).set_defaults(passthrough=True)
    flower = add(
        "flower",
        _flower,
        "Flower on 127.0.0.1:5555, refusing to start without authentication",
        epilog="Other arguments go to Flower as --name=value: --port=5556, --address=0.0.0.0 (every interface), "
        "--auth=REGEX with FLOWER_OAUTH2_KEY/SECRET/REDIRECT_URI and --auth_provider, --url_prefix, --persistent, "
        "--tasks_columns, ... (https://flower.readthedocs.io/en/latest/config.html). FLOWER_BASIC_AUTH=user:password "
        "comes from the environment or .env and never appears in the process list.",
    )
    flower.add_argument(
        "--insecure-no-auth", action="store_true", help="start without authentication (anyone who reaches the port)"
    )
    flower.set_defaults(passthrough=True)
    doctor = add("doctor", _doctor, "pre-flight check: settings, database, broker, model, folders, beat, time limit")
    doctor.add_argument("--no-model", action="store_true", help="skip loading the model")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument(
        "--as-service",
        action="store_true",
        help="the folder checks each service ran at its start as its own account (from DATA_DIR)",
    )
    doctor.add_argument("--this-host", action="store_true", help="with --as-service: this machine's services only")
    add("metrics", _metrics, "Prometheus metrics on METRICS_ADDRESS:METRICS_PORT (127.0.0.1:9808), from the database",
        epilog="Scrape http://HOST:PORT/metrics. Alert rules and a Grafana dashboard: deploy/prometheus, "
        "deploy/grafana.")  # fmt: skip
    watch = add("watch", _watch, "register files dropped into WATCH_DIR as queued recordings")
    watch.add_argument("--once", action="store_true", help="scan once and exit")

    one_ref = "a recording: its id (or the first characters of it), its file name, or a unique piece of the name"
    refs = "recordings: ids (or their first characters), file names, or unique pieces of names"
    status = add("status", _status, "counts by status, what is running, runs that failed; or one recording")
    status.add_argument("recording", nargs="?", help=one_ref)
    status.add_argument("--needs-review", action="store_true", help="transcripts whose quality figures are off")
    listing = add("list", _list, "recordings of every status, newest registered first, with filters")
    listing.add_argument("--status", action="append", metavar="STATUS",
                         help=f"only these ({', '.join(s.value for s in RecordingStatus)}); repeatable or "
                              "comma-separated")  # fmt: skip
    listing.add_argument("--name", help="only file names containing this (any case)")
    listing.add_argument(
        "--since", metavar="WHEN", help="registered at or after: 2026-03-01 or '2026-03-01 17:11' (UTC)"
    )
    listing.add_argument("--until", metavar="WHEN", help="registered before; a bare date includes that day (UTC)")
    listing.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    failed = add("failed", _failed, "failed recordings with their cause")
    failed.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    for sub in (listing, failed):  # the call's facts, read from its file name (callfacts.py)
        sub.add_argument("--phone", metavar="NUMBER", help="calls with this number: +18134353769, '+1 813 435 3769', "
                                                           "8134353769 (its last digits match too)")  # fmt: skip
        sub.add_argument("--contact", metavar="TEXT", help="calls whose contact contains this (any case)")
        sub.add_argument("--called-since", metavar="WHEN", help="calls that began at or after this (UTC)")
        sub.add_argument("--called-until", metavar="WHEN", help="calls that began before; a bare date includes it")
    found = add(
        "search",
        _search,
        "recordings whose words match, with where each hit was said, who said it, and the text",
        epilog='Words are ANDed and match the start of a word (refund finds refunds); "full refund" is a phrase; '
        "refund OR credit; -cancel leaves out. The same on Postgres and SQLite.",
    )
    found.add_argument("query", nargs="+", help='what was said: words, "a phrase", OR, -word')
    found.add_argument("--phone", metavar="NUMBER", help="calls with this number (its last digits match too)")
    found.add_argument("--contact", metavar="TEXT", help="calls whose contact contains this (any case)")
    found.add_argument("--since", metavar="WHEN", help="calls that began at or after (registered, where unknown)")
    found.add_argument("--until", metavar="WHEN", help="calls that began before; a bare date includes that day")
    found.add_argument("--status", action="append", metavar="STATUS", help="only recordings of these statuses")
    found.add_argument("--speaker", metavar="LABEL", help="only what this speaker said (any case), e.g. customer")
    found.add_argument("--limit", type=int, default=20, help="at most this many recordings (default 20)")
    found.add_argument("--hits", type=int, default=5, help="hits shown per recording (default 5)")
    hooks = add(
        "webhooks",
        _webhooks,
        "webhook deliveries: pending, failed and the last error; 'retry' sends again; 'deliver' runs a deliverer",
        epilog="Beat delivers the outbox when WEBHOOK_URL is set; 'deliver' is the same loop in the foreground "
        "(a deliverer of its own, e.g. as a service; several may run). --once: one round, then exit.",
    )
    hooks.add_argument("action", nargs="?", choices=["retry", "deliver"], help="retry: send again; deliver: run")
    hooks.add_argument("events", nargs="*", help="retry: event ids (or their first characters)")
    hooks.add_argument("--failed", action="store_true", help="retry: every failed event")
    hooks.add_argument("--once", action="store_true", help="deliver: one round of due events, then exit")
    hooks.add_argument("--status", choices=["pending", "delivered", "failed"], help="list only these")
    hooks.add_argument("--limit", type=int, default=50, help="at most this many events listed (default 50)")
    attempts = add("attempts", _attempts, "every run of one recording, with outcome and error")
    attempts.add_argument("recording", help=one_ref)
    reset = add("reset", _reset, "queue recordings again (error cleared, retry_count 0), like the SQL reset")
    reset.add_argument("recordings", nargs="*", help=refs)
    reset.add_argument("--failed", action="store_true", help="every failed recording")
    skip = add("skip", _skip, "take recordings out for good (status skipped)")
    skip.add_argument("recordings", nargs="+", help=refs)
    export = add("export", _export, "rebuild a transcript file from the database")
    export.add_argument("recording", help=one_ref)
    export.add_argument("--format", choices=["txt", "srt", "vtt", "json"], default="txt")
    export.add_argument("-o", "--output", help="file to write, or - for stdout (default: its place in OUTPUT_DIR)")
    export.add_argument(
        "--redacted", nargs="?", const="", choices=["", "numbers", "all"], metavar="LEVEL",
        help="a redacted copy (NAME.redacted.FORMAT): card, phone, account and ID numbers, and with 'all' "
             "e-mails too; LEVEL defaults to REDACT, or 'all' when REDACT=off",
    )  # fmt: skip
    one = add("transcribe", _transcribe_file, "transcribe one file now: no queue, no database")
    one.add_argument("file", type=Path)
    one.add_argument("--format", action="append", choices=["txt", "srt", "vtt", "json"], help="repeatable")
    one.add_argument("--output-dir", type=Path, help="where to write the files (default: beside the audio)")
    for sub in (status, listing, failed, found, hooks, attempts, reset, skip, one):
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _setup_logging(settings: Settings, debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # "No hostname was supplied" for the folder broker


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    from transcriber.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


# ---------------------------------------------------------------- services


def _db_upgrade(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber.migrate import upgrade_to_head

    if args.action == "reindex":
        from transcriber.db import make_engine, make_session_factory, transaction
        from transcriber.search import reindex

        engine = make_engine(settings.database_url)
        try:
            with transaction(make_session_factory(engine)) as session:
                print(reindex(session))
        finally:
            engine.dispose()
        return 0
    print(f"database is at revision {upgrade_to_head(settings.database_url)}")
    return 0


def _celery_argv(command: str, settings: Settings, extra: list[str]) -> list[str]:
    """Celery's command line: the caller's arguments, with LOG_LEVEL unless they chose one."""
    argv = [command, *extra]
    if not any(a.startswith(("--loglevel", "-l")) for a in extra):
        argv.append(f"--loglevel={settings.log_level}")
    return argv


def _wants_help(extra: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in extra)


def _given(extra: list[str], long: str, short: str) -> bool:
    """Whether Celery's option ``long``/``short`` is among ``extra`` (``--schedule`` is not ``--scheduler``)."""
    return any(
        a in (long, short) or a.startswith(f"{long}=") or (a.startswith(short) and not a.startswith("--"))
        for a in extra
    )


def _option(extra: list[str], long: str, short: str) -> str | None:
    """The value given to Celery's option ``long``/``short`` in ``extra`` (``--pool=solo``, ``-P solo``, ``-Psolo``)."""
    for i, a in enumerate(extra):
        if a.startswith(f"{long}="):
            return a.split("=", 1)[1]
        if a in (long, short):
            return extra[i + 1] if i + 1 < len(extra) else None
        if a.startswith(short) and not a.startswith("--"):
            return a[len(short) :].lstrip("=")
    return None


def _worker(settings: Settings, _args: argparse.Namespace, extra: list[str]) -> int:
    from transcriber.celery_app import app, use_settings
    from transcriber.model_store import ensure_available, ensure_device

    if _wants_help(extra):  # Celery's help: no model to find first
        return int(app.start(["worker", "--help"]) or 0)
    ensure_device(settings.whisper_device)  # a worker that cannot load the model must not take messages
    ensure_available(settings.whisper_model, settings.whisper_model_dir)  # fail at start, not in every task
    use_settings(settings)
    app.worker_main(worker_argv(settings, extra))
    return 0


def worker_argv(settings: Settings, extra: list[str]) -> list[str]:
    """Celery's worker command line: the operator's arguments, with our pool and concurrency unless given."""
    from transcriber.runner import default_concurrency

    argv = _celery_argv("worker", settings, extra)
    pool = _option(extra, "--pool", "-P")
    given = _option(extra, "--concurrency", "-c")
    processes = int(given) if given and given.isdigit() else default_concurrency(settings.whisper_device)
    if given is None:
        # One model process per core, one thread each (runner.default_concurrency); solo runs one task only.
        argv.append(f"--concurrency={1 if pool == 'solo' else processes}")
    if pool is None:
        # threads on every platform: each thread has a model process of its own (the decoding is there, not in
        # the worker), and a warm stop (SIGTERM, Ctrl-C, a service stop) hands the running calls back at once.
        # Under Celery's prefork the calls run in pool children that the stop waits for: an hour-long call
        # would finish first (or be killed at the service's stop timeout). prefork does not run on Windows.
        # One process: solo, as before.
        argv.append("--pool=threads" if processes > 1 else "--pool=solo")
    return argv


def _beat(settings: Settings, _args: argparse.Namespace, extra: list[str]) -> int:
    from transcriber.celery_app import app, use_settings

    use_settings(settings)
    argv = _celery_argv("beat", settings, extra)
    if not _wants_help(extra) and not _given(extra, "--schedule", "-s"):
        # Celery's default is ./celerybeat-schedule.*: files in whatever folder beat was started from.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        argv.append(f"--schedule={settings.data_dir / 'celerybeat-schedule'}")
    app.start(argv)
    return 0


def _flower(settings: Settings, args: argparse.Namespace, extra: list[str]) -> int:
    """Flower itself, with the defaults and the refusal that ``celery -A transcriber.celery_app flower`` gets too.

    Both go through ``celery_app.secure_flower``: 127.0.0.1, FLOWER_BASIC_AUTH from the settings, no start
    without authentication unless ``--insecure-no-auth``.
    """
    from transcriber.celery_app import INSECURE_FLOWER, app, use_settings

    use_settings(settings)
    app.start(["flower", *extra, *([INSECURE_FLOWER] if args.insecure_no_auth else [])])
    return 0


def _doctor(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber.doctor import FAIL, run_checks
    from transcriber.tables import utcnow

    if args.as_service:
        from transcriber import selfcheck

        found = selfcheck.check_services(settings, now=utcnow(), this_host=args.this_host)
        _print_json([f.__dict__ for f in found]) if args.json else print(selfcheck.format_findings(found))
        return 1 if any(f.status == FAIL for f in found) else 0
    checks = run_checks(settings, now=utcnow(), include_model=not args.no_model)
    if args.json:
        _print_json([c.__dict__ for c in checks])
    else:
        for c in checks:
            print(f"{c.status.upper():<5} {c.name:<11} {c.detail}")
    return 1 if any(c.status == FAIL for c in checks) else 0


def _metrics(settings: Settings, _args: argparse.Namespace, _extra: list[str]) -> int:
    """The Prometheus exporter: every figure read from the database at each scrape (one covers all workers)."""
    from transcriber import metrics, selfcheck
    from transcriber.ingest import stop_on_signals

    stop = threading.Event()
    stop_on_signals(stop)
    selfcheck.report(settings, role="metrics")
    metrics.serve(settings, stop)
    return 0


def _make_ingester(settings: Settings, stop: Any = None) -> Any:
    """The watcher; with ``stop`` it first waits for the database (a service that starts before it)."""
    from transcriber import callfacts
    from transcriber.celery_app import use_settings
    from transcriber.db import make_engine, make_session_factory, wait_for_database
    from transcriber.ingest import Ingester
    from transcriber.tasks import send_transcribe

    use_settings(settings)
    watch_dir = Path(settings.watch_dir)
    if not watch_dir.is_dir():
        raise ConfigError(f"WATCH_DIR={watch_dir} is not a folder: create it or point WATCH_DIR at one")
    sessions = make_session_factory(make_engine(settings.database_url))
    if stop is not None and not wait_for_database(sessions, stop):
        raise KeyboardInterrupt
    read_facts = functools.partial(callfacts.parse, pattern=settings.filename_pattern, region=settings.phone_region,
                                   timezone=settings.filename_timezone)  # fmt: skip
    return Ingester(sessions, watch_dir, settle_seconds=settings.watch_settle_seconds, send=send_transcribe,
                    read_facts=read_facts, trust_close=settings.watch_trust_close)  # fmt: skip


def _watch(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber import selfcheck
    from transcriber.ingest import run_watch_loop, stop_on_signals

    if args.once:
        print(f"registered {_make_ingester(settings).scan_until_settled()} new recording(s)")
        return 0
    stop = threading.Event()
    stop_on_signals(stop)
    selfcheck.report(settings, role="watcher")
    ingester = _make_ingester(settings, stop)
    log.info("watching %s (settle %ss, rescan every %ss)", settings.watch_dir, settings.watch_settle_seconds,
             settings.watch_poll_seconds)  # fmt: skip
    run_watch_loop(ingester, poll_seconds=settings.watch_poll_seconds, stop=stop)
    return 0


def _run(settings: Settings, _args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber import selfcheck
    from transcriber.ingest import run_watch_loop, stop_on_signals
    from transcriber.migrate import upgrade_to_head
    from transcriber.model_store import ensure_available, ensure_device
    from transcriber.supervisor import supervise

    ensure_device(settings.whisper_device)
    for folder in (settings.data_dir, settings.watch_dir, settings.output_dir):
        Path(folder).mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.database_url)
    ensure_available(settings.whisper_model, settings.whisper_model_dir)
    ingester = _make_ingester(settings)
    stop = threading.Event()
    stop_on_signals(stop)
    selfcheck.report(settings, role="watcher")  # the worker and beat children report their own
    watcher = threading.Thread(
        target=run_watch_loop,
        args=(ingester,),
        kwargs={"poll_seconds": settings.watch_poll_seconds, "stop": stop},
        name="watch",
    )
    print(f"transcriber: drop recordings into {Path(settings.watch_dir).absolute()}; transcripts appear in "
          f"{Path(settings.output_dir).absolute()}. Ctrl-C stops.", file=sys.stderr)  # fmt: skip
    return supervise(settings, watcher, stop)


# ---------------------------------------------------------------- operator commands


def _status(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber import report
    from transcriber.tables import utcnow

    with _session(settings) as session:
        if args.needs_review:
            rows = report.needs_review_list(session)
            _print_json(rows) if args.json else print(report.format_needs_review(rows))
        elif args.recording:
            data = report.attempts_of(session, args.recording, now=utcnow())
            _print_json(data) if args.json else print(report.format_detail(data))
        else:
            data = report.summary(session, now=utcnow())
            _print_json(data) if args.json else print(report.format_summary(data))
    return 0


def _statuses(args: argparse.Namespace) -> list[str]:
    """``--status`` as given (repeatable, comma-separated), each checked against the known statuses."""
    statuses = [part.strip().lower() for given in args.status or [] for part in given.split(",") if part.strip()]
    known = [s.value for s in RecordingStatus]
    unknown = [s for s in statuses if s not in known]
    if unknown:
        raise TranscriberError(f"--status {unknown[0]!r}: expected one of {', '.join(known)}")
    return statuses


def _list(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber import report

    statuses = _statuses(args)
    since = report.parse_when(args.since, option="--since") if args.since else None
    until = report.parse_when(args.until, option="--until", end_of_day=True) if args.until else None
    call = _call_filter(settings, args)
    with _session(settings) as session:
        rows = report.list_recordings(
            session, statuses=statuses, name=args.name, since=since, until=until, limit=args.limit, call=call
        )
    _print_json(rows) if args.json else print(report.format_list(rows))
    return 0


def _failed(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber import report

    call = _call_filter(settings, args)
    with _session(settings) as session:
        rows = report.failed_list(session, limit=args.limit, call=call)
    _print_json(rows) if args.json else print(report.format_failed(rows))
    return 0


def _search(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber import report, search

    query = " ".join(args.query)
    since = report.parse_when(args.since, option="--since") if args.since else None
    until = report.parse_when(args.until, option="--until", end_of_day=True) if args.until else None
    call = report.CallFilter(phone=args.phone, contact=args.contact) if args.phone or args.contact else None
    with _session(settings) as session:
        result = search.search(
            session, query, call=call, since=since, until=until, statuses=_statuses(args), speaker=args.speaker,
            limit=args.limit, hits_per_recording=args.hits,
        )  # fmt: skip
    if args.json:
        _print_json(search.to_json(result))
    else:
        print(search.render(result, bold=sys.stdout.isatty()))
    return 0


def _webhooks(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    """The outbox for operators: what is pending or failed and why; send again; deliver in the foreground."""
    from transcriber import webhooks
    from transcriber.db import make_engine, make_session_factory, transaction
    from transcriber.tables import utcnow

    if args.action != "retry" and (args.events or args.failed):
        raise TranscriberError("event ids and --failed go with 'transcriber webhooks retry'")
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    try:
        if args.action == "retry":
            if not args.events and not args.failed:
                raise TranscriberError("say which: event ids (or their first characters), or --failed for all failed")
            with transaction(sessions) as session:
                sent = webhooks.retry_events(session, now=utcnow(), event_ids=args.events)
            _print_json(sent) if args.json else print(f"{len(sent)} event(s) queued for delivery again")
            if not settings.webhooks_enabled:
                print("note: WEBHOOK_URL is not set here; beat delivers them where it is", file=sys.stderr)
            return 0
        if args.action == "deliver":
            if not settings.webhooks_enabled:
                raise ConfigError("WEBHOOK_URL is not set: there is nowhere to deliver to")
            if args.once:
                counts = webhooks.deliver_due(sessions, settings)
                print(f"delivered {counts.delivered}, retrying {counts.retrying}, failed {counts.failed}")
                return 0
            from transcriber.ingest import stop_on_signals

            stop = threading.Event()
            stop_on_signals(stop)
            webhooks.run_delivery_loop(sessions, settings, stop)
            return 0
        with sessions() as session:
            data = webhooks.summary(session, now=utcnow())
            rows = webhooks.list_events(session, status=args.status, limit=args.limit)
        if args.json:
            _print_json({"summary": data, "events": rows})
        else:
            print(webhooks.format_summary(data))
            print()
            print(webhooks.format_events(rows))
        return 0
    finally:
        engine.dispose()


def _call_filter(settings: Settings, args: argparse.Namespace) -> CallFilter | None:
    """``--phone``, ``--contact``, ``--called-since``, ``--called-until`` as a ``report.CallFilter`` (or ``None``)."""
    from transcriber import report

    if args.phone is None and args.contact is None and not args.called_since and not args.called_until:
        return None
    return report.CallFilter(
        phone=args.phone,
        contact=args.contact,
        since=report.parse_when(args.called_since, option="--called-since") if args.called_since else None,
        until=report.parse_when(args.called_until, option="--called-until", end_of_day=True)
        if args.called_until
        else None,
        region=settings.phone_region,
    )


def _attempts(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber import report

    with _session(settings) as session:
        data = report.attempts_of(session, args.recording)
    if args.json:
        _print_json(data)
    else:
        print(f"{data['id']}  {data['status']}  {data['file_name']}")
        print(report.format_attempts(data))
    return 0


def _change(settings: Settings, args: argparse.Namespace, action: str) -> int:
    from transcriber import lifecycle, report
    from transcriber.tables import utcnow

    with _session(settings) as session, session.begin():
        ids = [report.find_recording(session, ref).id for ref in getattr(args, "recordings", [])]
        if action == "reset":
            if not ids and not args.failed:
                raise TranscriberError("say which recordings to reset: IDs, or --failed for every failed one")
            changed = lifecycle.reset_recordings(session, now=utcnow(), ids=ids, failed=args.failed)
        else:
            changed = lifecycle.skip_recordings(session, now=utcnow(), ids=ids)
    if args.json:
        _print_json([c.__dict__ for c in changed])
        return 0
    for c in changed:
        print(f"{str(c.recording_id)[:8]}  {c.old_status} -> {c.new_status}  {c.file_name}")
    print(f"{len(changed)} recording(s) changed" + ("; beat sends them within DISPATCH_INTERVAL_SECONDS"
                                                    if action == "reset" and changed else ""))  # fmt: skip
    return 0


def _reset(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    return _change(settings, args, "reset")


def _skip(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    return _change(settings, args, "skip")


def _export(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber.outputs import RENDERERS, output_stem, redacted_document, write_atomic
    from transcriber.report import find_recording
    from transcriber.transcripts import load_document

    with _session(settings) as session:
        recording = find_recording(session, args.recording)
        doc = load_document(session, recording, model=settings.whisper_model)
    suffix = ""
    if args.redacted is not None:  # the database keeps the words as said; only this copy is masked
        level = args.redacted or (settings.redact if settings.redact != "off" else "all")
        doc, suffix = redacted_document(doc, level, settings.phone_region), ".redacted"
    text = RENDERERS[args.format](doc)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    if args.output:
        target = Path(args.output)
    else:
        stem = output_stem(Path(settings.output_dir), Path(settings.watch_dir), recording.file_path)
        target = stem.with_name(f"{stem.name}{suffix}.{args.format}")
    write_atomic(target, text)
    print(target)
    return 0


def _transcribe_file(settings: Settings, args: argparse.Namespace, _extra: list[str]) -> int:
    from transcriber.oneshot import transcribe_file

    formats = tuple(args.format or settings.formats)
    result = transcribe_file(settings, args.file, formats=formats, output_dir=args.output_dir)
    for doubt in (result.uncovered, result.speaker_review):  # the transcript is written; a person should look
        if doubt:
            print(f"needs review: {doubt}", file=sys.stderr)
    if args.json:
        _print_json({"text": result.text, "language": result.language, "duration": result.duration,
                     "coverage": result.coverage.to_json() if result.coverage else None,
                     "speakers": result.speakers.to_json() if result.speakers else None,
                     "files": [str(p) for p in result.files]})  # fmt: skip
    else:
        print(result.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
