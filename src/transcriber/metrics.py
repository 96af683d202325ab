"""Prometheus metrics, computed from the database at each scrape (``transcriber metrics``).

The database is the source of truth and workers run on many machines, restart and die: a counter kept in
one process would see only its own share and start again at 0 with it. So the exporter keeps no state. Each
scrape reads a few aggregate queries (``read_snapshot``, one read-only session) and turns them into metric
families (``families``, pure). Run one exporter per deployment, anywhere that reaches the database.

Counters derived from table counts (``transcriber_attempts_total``, ``transcriber_failures_total``,
``transcriber_audio_seconds_total``, the buckets of ``transcriber_realtime_factor``) are honest counters:
rows are only added while they are kept, so each series only grows, and ``rate()`` / ``increase()`` work.
Deleting rows, or resetting a completed recording, makes one drop; Prometheus reads a drop as a counter
reset (as after a process restart), which costs one interval of ``rate()``, nothing more.

When the database cannot be read the scrape still answers 200 with ``transcriber_database_up 0`` (and no
other transcriber figures, rather than false zeros), and the log says why in one line: the first failure at
WARNING, the next ones at DEBUG until it answers again.

Timestamps (``*_timestamp_seconds``) are 0 when the thing never happened, so every series always exists.
Ages are measured with this machine's clock against times the workers wrote with theirs.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector as _Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import Engine, case, func, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from transcriber.db import describe_error, make_engine, make_session_factory
from transcriber.errors import CAUSES, ConfigError
from transcriber.lifecycle import last_sign_of_life
from transcriber.maintenance import BEAT_ROW
from transcriber.settings import Settings
from transcriber.tables import (
    Attempt,
    AttemptOutcome,
    DeliveryStatus,
    Recording,
    RecordingStatus,
    ServiceRun,
    UTCDateTime,
    WebhookEvent,
    utcnow,
)

log = logging.getLogger(__name__)

# Seconds of work per second of audio: large-v3 on a GPU ~0.05, small on a CPU ~0.3, overloaded > 1.
REALTIME_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
# A running attempt is not counted: ``attempts_total{outcome="running"}`` would fall when one finishes.
FINISHED_OUTCOMES = tuple(o.value for o in AttemptOutcome if o is not AttemptOutcome.RUNNING)
# The periodic jobs that note their runs in ``service_runs`` (maintenance.py); present with 0 before a first run.
BEAT_TASKS = ("cleanup_stuck", "dispatch_queued")

# Every sample name a scrape with a working database serves (the deploy files may use only these).
SAMPLE_NAMES = frozenset(
    {
        "transcriber_database_up",
        "transcriber_scrape_duration_seconds",
        "transcriber_recordings",
        "transcriber_queued_due",
        "transcriber_oldest_queued_seconds",
        "transcriber_oldest_due_seconds",
        "transcriber_oldest_heartbeat_seconds",
        "transcriber_last_heartbeat_timestamp_seconds",
        "transcriber_last_attempt_started_timestamp_seconds",
        "transcriber_last_completed_timestamp_seconds",
        "transcriber_needs_review",
        "transcriber_attempts_total",
        "transcriber_failures_total",
        "transcriber_audio_seconds_total",
        "transcriber_realtime_factor_bucket",
        "transcriber_realtime_factor_sum",
        "transcriber_realtime_factor_count",
        "transcriber_webhook_pending",
        "transcriber_webhook_failed",
        "transcriber_webhook_oldest_pending_seconds",
        "transcriber_beat_last_run_timestamp_seconds",
    }
)


# ---------------------------------------------------------------- what one scrape reads


@dataclass(frozen=True)
class Snapshot:
    """The figures of one scrape, as the database holds them."""

    recordings: Mapping[str, int]
    queued_due: int = 0
    oldest_queued_at: datetime | None = None  # registered earliest, of those queued
    oldest_due_since: datetime | None = None  # due (backoff over) for longest, of those queued
    stalest_heartbeat_at: datetime | None = None  # of those processing
    last_heartbeat_at: datetime | None = None  # of those processing
    last_attempt_started_at: datetime | None = None
    last_completed_at: datetime | None = None
    audio_seconds: float = 0.0
    needs_review: int = 0
    realtime_buckets: tuple[int, ...] = (0,) * len(REALTIME_BUCKETS)  # cumulative: <= each bound
    realtime_count: int = 0
    realtime_sum: float = 0.0
    attempts: Mapping[str, int] = field(default_factory=dict)
    failures: Mapping[str, int] = field(default_factory=dict)
    webhooks: Mapping[str, int] = field(default_factory=dict)
    oldest_webhook_pending_at: datetime | None = None
    beat_runs: Mapping[str, datetime] = field(default_factory=dict)


def read_snapshot(session: Session, *, now: datetime) -> Snapshot:
    """Seven aggregate queries; the queued and processing ones use the status index and stay small.

    The completed, attempts and webhook ones read their whole table (milliseconds for 10k+ rows).
    """
    recordings = dict(session.execute(select(Recording.status, func.count()).group_by(Recording.status)).all())
    queued, processing, completed = _queued(session, now), _processing(session), _completed(session)
    attempt_rows = session.execute(
        select(Attempt.outcome, Attempt.cause, func.count(), func.max(Attempt.started_at)).group_by(
            Attempt.outcome, Attempt.cause
        )
    ).all()
    attempts: dict[str, int] = {}
    failures: dict[str, int] = {}
    for outcome, cause, count, _ in attempt_rows:
        attempts[outcome] = attempts.get(outcome, 0) + count
        if cause is not None:
            failures[cause] = failures.get(cause, 0) + count
    webhook_rows = session.execute(
        select(WebhookEvent.status, func.count(), func.min(WebhookEvent.created_at)).group_by(WebhookEvent.status)
    ).all()
    webhooks = {status: count for status, count, _ in webhook_rows}
    oldest_webhook = next((first for status, _, first in webhook_rows if status == DeliveryStatus.PENDING.value), None)
    # Not the beats' own rows (``beat HOST PID``, one per beat process): a new series at every beat restart.
    jobs = select(ServiceRun.name, ServiceRun.last_run_at).where(~ServiceRun.name.startswith(BEAT_ROW))
    beat_runs = dict(session.execute(jobs).all())
    return Snapshot(
        recordings=recordings,
        queued_due=int(queued.due or 0),
        oldest_queued_at=queued.oldest,
        oldest_due_since=queued.due_since,
        stalest_heartbeat_at=processing.stalest,
        last_heartbeat_at=processing.last,
        last_attempt_started_at=max((row[3] for row in attempt_rows if row[3] is not None), default=None),
        last_completed_at=completed.last,
        audio_seconds=float(completed.audio or 0.0),
        needs_review=int(completed.review or 0),
        realtime_buckets=tuple(int(completed._mapping[f"le{i}"] or 0) for i in range(len(REALTIME_BUCKETS))),
        realtime_count=int(completed.rtf_count or 0),
        realtime_sum=float(completed.rtf_sum or 0.0),
        attempts=attempts,
        failures=failures,
        webhooks=webhooks,
        oldest_webhook_pending_at=oldest_webhook,
        beat_runs=beat_runs,
    )


def _queued(session: Session, now: datetime) -> Any:
    """How many queued recordings are due, the oldest registered, and the one due for longest.

    A recording waiting out its retry backoff (``not_before`` ahead) is not due: it is not stuck. One that is
    due has waited since the latest of: its registration, the end of its last attempt (failed, rescued or
    handed back by a stopping worker) and the end of its backoff. Not ``updated_at``: a trigger moves it at
    every UPDATE, a dispatch included. A failed recording reset by an operator counts from its last attempt.
    """
    due = or_(Recording.not_before.is_(None), Recording.not_before <= now)
    last_attempt_end = (
        select(func.max(Attempt.finished_at)).where(Attempt.recording_id == Recording.id).scalar_subquery()
    )
    waiting_since = _latest(
        session,
        Recording.created_at,
        func.coalesce(Recording.not_before, Recording.created_at),
        func.coalesce(last_attempt_end, Recording.created_at),
    )
    return session.execute(
        select(
            func.sum(case((due, 1), else_=0)).label("due"),
            func.min(Recording.created_at).label("oldest"),
            func.min(case((due, waiting_since))).label("due_since"),
        ).where(Recording.status == RecordingStatus.QUEUED.value)
    ).one()


def _latest(session: Session, *values: Any) -> Any:
    """The latest of non-NULL timestamps: ``greatest()`` on Postgres, the scalar ``max()`` of SQLite."""
    name = "greatest" if session.get_bind().dialect.name == "postgresql" else "max"
    return getattr(func, name)(*values, type_=UTCDateTime())


def _processing(session: Session) -> Any:
    last_sign = last_sign_of_life()  # the rescue's own measure, so the stale-heartbeat alert agrees with it
    return session.execute(
        select(func.min(last_sign).label("stalest"), func.max(Recording.heartbeat_at).label("last")).where(
            Recording.status == RecordingStatus.PROCESSING.value
        )
    ).one()


def _completed(session: Session) -> Any:
    """Audio, review flags, the last completion and the realtime-factor histogram in one pass (SUM(CASE ...))."""
    rtf = Recording.work_seconds_per_audio_second
    buckets = [func.sum(case((rtf <= bound, 1), else_=0)).label(f"le{i}") for i, bound in enumerate(REALTIME_BUCKETS)]
    return session.execute(
        select(
            func.sum(Recording.duration_seconds).label("audio"),
            func.sum(case((Recording.needs_review.is_(True), 1), else_=0)).label("review"),
            func.max(Recording.finished_at).label("last"),
            func.count(rtf).label("rtf_count"),
            func.sum(rtf).label("rtf_sum"),
            *buckets,
        ).where(Recording.status == RecordingStatus.COMPLETED.value)
    ).one()


# ---------------------------------------------------------------- what one scrape serves


def families(snap: Snapshot, *, now: datetime) -> list[Metric]:
    """The metric families of a snapshot: every status, outcome and cause present, 0 included."""
    recordings = GaugeMetricFamily(
        "transcriber_recordings", "Recordings by status (failed ones need an operator).", labels=["status"]
    )
    for status in _with_extra([s.value for s in RecordingStatus], snap.recordings):
        recordings.add_metric([status], snap.recordings.get(status, 0))
    attempts = CounterMetricFamily(
        "transcriber_attempts", "Finished attempts (task runs) by outcome.", labels=["outcome"]
    )
    for outcome in _with_extra(FINISHED_OUTCOMES, snap.attempts, leave_out=(AttemptOutcome.RUNNING.value,)):
        attempts.add_metric([outcome], snap.attempts.get(outcome, 0))
    failures = CounterMetricFamily(
        "transcriber_failures", "Attempts that did not succeed, by the class of their cause.", labels=["cause"]
    )
    for cause in _with_extra(CAUSES, snap.failures):
        failures.add_metric([cause], snap.failures.get(cause, 0))
    beat = GaugeMetricFamily(
        "transcriber_beat_last_run_timestamp_seconds",
        "When each periodic job last ran (0: never); beat schedules them, a worker runs them.",
        labels=["task"],
    )
    for task in _with_extra(BEAT_TASKS, snap.beat_runs):
        beat.add_metric([task], _timestamp(snap.beat_runs.get(task)))
    realtime = HistogramMetricFamily(
        "transcriber_realtime_factor",
        "Seconds of work per second of audio of completed recordings (below 1: faster than real time).",
        buckets=[
            *((floatToGoString(b), n) for b, n in zip(REALTIME_BUCKETS, snap.realtime_buckets, strict=True)),
            ("+Inf", snap.realtime_count),
        ],
        sum_value=snap.realtime_sum,
    )
    audio = CounterMetricFamily(
        "transcriber_audio_seconds", "Seconds of audio of completed recordings.", value=snap.audio_seconds
    )
    pending, failed = (snap.webhooks.get(s.value, 0) for s in (DeliveryStatus.PENDING, DeliveryStatus.FAILED))
    gauges = (
        (
            "transcriber_queued_due",
            "Queued recordings that are due (not waiting out a retry backoff).",
            snap.queued_due,
        ),
        (
            "transcriber_oldest_queued_seconds",
            "Age of the oldest queued recording since it was registered (backoff included; 0: none queued).",
            _age(now, snap.oldest_queued_at),
        ),
        (
            "transcriber_oldest_due_seconds",
            "How long the queued recording due for longest has waited for a worker (0: none due).",
            _age(now, snap.oldest_due_since),
        ),
        (
            "transcriber_oldest_heartbeat_seconds",
            "Age of the stalest heartbeat of a processing recording (0: none); rescued after STUCK_TIMEOUT_SECONDS.",
            _age(now, snap.stalest_heartbeat_at),
        ),
        (
            "transcriber_last_heartbeat_timestamp_seconds",
            "The newest heartbeat of a processing recording (0: none processing).",
            _timestamp(snap.last_heartbeat_at),
        ),
        (
            "transcriber_last_attempt_started_timestamp_seconds",
            "When a worker last took a recording (0: never).",
            _timestamp(snap.last_attempt_started_at),
        ),
        (
            "transcriber_last_completed_timestamp_seconds",
            "When a recording last completed (0: never).",
            _timestamp(snap.last_completed_at),
        ),
        ("transcriber_needs_review", "Completed recordings flagged for review.", snap.needs_review),
        ("transcriber_webhook_pending", "Webhook events not delivered yet.", pending),
        ("transcriber_webhook_failed", "Webhook events given up on ('transcriber webhooks retry' resends).", failed),
        (
            "transcriber_webhook_oldest_pending_seconds",
            "Age of the oldest undelivered webhook event (0: none).",
            _age(now, snap.oldest_webhook_pending_at),
        ),
    )
    return [recordings, attempts, failures, audio, realtime, beat, *(_gauge(*g) for g in gauges)]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _with_extra(
    known: tuple[str, ...] | list[str], found: Mapping[str, object], leave_out: tuple[str, ...] = ()
) -> list[str]:
    """The known labels in order, then any others the database holds (a newer version's), never a left-out one."""
    return [*known, *sorted(k for k in found if k not in known and k not in leave_out)]


def _age(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


def _timestamp(when: datetime | None) -> float:
    return when.timestamp() if when is not None else 0.0


class Collector(_Collector):
    """Reads the database at each scrape; register it with a ``CollectorRegistry`` of its own.

    Scrapes are served one at a time (a lock), so an exporter holds at most one database connection busy.
    """

    def __init__(self, sessions: sessionmaker[Session], *, clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False

    def describe(self) -> Iterator[Metric]:
        """Nothing: registering must not read the database, and the names vary with what it holds."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = time.perf_counter()
            now = self._clock()
            try:
                with self._sessions() as session:
                    found: list[Metric] | None = families(read_snapshot(session, now=now), now=now)
            except SQLAlchemyError as exc:
                found = None
                self._note_down(exc)
            else:
                self._note_up()
            took = time.perf_counter() - started
        yield from found or ()
        yield _gauge("transcriber_database_up", "1 when the exporter could read the database at this scrape.",
                     0 if found is None else 1)  # fmt: skip
        yield _gauge("transcriber_scrape_duration_seconds", "How long this scrape's queries took.", took)

    def _note_down(self, exc: SQLAlchemyError) -> None:
        level = logging.DEBUG if self._down else logging.WARNING
        log.log(level, "metrics: cannot read the database (%s); serving transcriber_database_up 0", describe_error(exc))
        self._down = True

    def _note_up(self) -> None:
        if self._down:
            log.info("metrics: the database answers again")
        self._down = False


# ---------------------------------------------------------------- the HTTP server


class MetricsServer:
    """The exporter's HTTP server on a thread of its own; ``close()`` stops it and frees the port."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._httpd.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # Windows lets a second socket with SO_REUSEADDR bind a port that another one listens on: no "in use"
    # error, and scrapes would reach either exporter. Elsewhere it only allows a restart while the old port
    # is in TIME_WAIT, which is wanted.
    allow_reuse_address = sys.platform != "win32"


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A line per scrape would fill the service log; requests are not logged."""


def start_server(
    sessions: sessionmaker[Session], *, address: str, port: int, clock: Callable[[], datetime] = utcnow
) -> MetricsServer:
    """Serve the metrics of the database behind ``sessions`` on ``address:port`` (0: any free port).

    Raises ``ConfigError`` (one line naming METRICS_PORT or METRICS_ADDRESS) when it cannot listen there.
    """
    registry = CollectorRegistry(auto_describe=False)  # its own: no process metrics of this small process
    registry.register(Collector(sessions, clock=clock))
    try:
        family = socket.getaddrinfo(address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        server_class = _Server6 if family == socket.AF_INET6 else _Server
        httpd = make_server(address, port, make_wsgi_app(registry), server_class, _QuietHandler)
    except OSError as exc:
        raise ConfigError(bind_error(address, port, exc)) from None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics-http")
    thread.daemon = True
    thread.start()
    return MetricsServer(httpd, thread)


def bind_error(address: str, port: int, exc: OSError) -> str:
    """Why the exporter cannot listen, as one line naming the setting to change."""
    why = exc.strerror or str(exc)
    if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)):
        return (
            f"METRICS_PORT={port} is in use: {why}"
            " (another exporter or program listens there: stop it or choose another METRICS_PORT)"
        )
    if exc.errno in (errno.EACCES, getattr(errno, "WSAEACCES", errno.EACCES)):
        return (
            f"METRICS_PORT={port} cannot be used: {why} (ports below 1024 need privileges; on Windows"
            " 'netsh int ipv4 show excludedportrange protocol=tcp' lists reserved ones): choose another METRICS_PORT"
        )
    return (
        f"METRICS_ADDRESS={address} cannot be used: {why} (give an address of this machine, e.g. 127.0.0.1 or 0.0.0.0)"
    )


def _engine(database_url: str) -> Engine:
    """A scrape must answer within Prometheus' timeout (10 s by default), also while the server is unreachable."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("psycopg2", "psycopg"):
        return make_engine(database_url, connect_args={"connect_timeout": 3, "options": "-c statement_timeout=5000"})
    return make_engine(database_url)


def serve(settings: Settings, stop: threading.Event) -> None:
    """``transcriber metrics``: serve Prometheus text on METRICS_ADDRESS:METRICS_PORT until ``stop`` is set.

    Raises ``ConfigError`` when the port is in use or the address is not this machine's. The database need
    not be up: scrapes report ``transcriber_database_up 0`` until it is.
    """
    engine = _engine(settings.database_url)
    try:
        with start_server(
            make_session_factory(engine), address=settings.metrics_address, port=settings.metrics_port
        ) as server:
            log.info("serving Prometheus metrics on %s", server.url)
            # Short waits, not one long one: on Windows a signal handler (the service's Ctrl+C) runs only
            # when the main thread's wait returns.
            while not stop.wait(1.0):
                pass
    finally:
        engine.dispose()
