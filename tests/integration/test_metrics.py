"""``transcriber metrics`` against real databases: recordings driven through the lifecycle, scraped over HTTP.

Every figure is asserted exactly: the exporter's clock is fixed (``NOW``) and every lifecycle step is given its
time, so ages and timestamps are known to the microsecond. The alert rules in deploy/prometheus are evaluated
against the scraped values with a small PromQL subset (below), the one the rules are written in.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle, maintenance, metrics
from transcriber.db import make_engine, make_session_factory, transaction
from transcriber.errors import CAUSES, AttemptTimeout, ConfigError, PermanentError
from transcriber.migrate import upgrade_to_head
from transcriber.segments import Segment
from transcriber.settings import Settings
from transcriber.tables import Recording, WebhookEvent
from transcriber.transcripts import load_segments

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
POLICY = lifecycle.RetryPolicy(max_retries=3, backoff_base=10, backoff_cap=600)
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "transcriber-alerts.yml"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# ---------------------------------------------------------------- driving recordings


def register(sessions: sessionmaker[Session], at: datetime) -> uuid.UUID:
    with transaction(sessions) as s:
        rec, _ = lifecycle.register_recording(
            s, file_path=f"/in/{uuid.uuid4().hex}.m4a", file_name="call.m4a", file_size=10,
            content_sha256=uuid.uuid4().hex * 2, now=at,
        )  # fmt: skip
        return rec.id


def claim(sessions: sessionmaker[Session], rid: uuid.UUID, at: datetime) -> lifecycle.Claim:
    with transaction(sessions) as s:
        c = lifecycle.claim_recording(s, recording_id=rid, task_id=uuid.uuid4().hex, worker="w1", now=at)
    assert c is not None
    return c


def complete(
    sessions: sessionmaker[Session], rid: uuid.UUID, *, claimed: datetime, took: float, audio: float, review: bool
) -> None:
    c = claim(sessions, rid, claimed)
    done = claimed + timedelta(seconds=took)
    with transaction(sessions) as s:
        lifecycle.save_progress(s, c, now=done, first_idx=0, segments=[Segment(0.0, audio, " Hello.")],
                                progress_seconds=audio)  # fmt: skip
        lifecycle.complete_recording(
            s, c, now=done, segments=load_segments(s, rid), language="en", duration_seconds=audio,
            speaker_review="the speaker turns need a look" if review else None, notify=True,
        )  # fmt: skip


def fail(sessions: sessionmaker[Session], rid: uuid.UUID, at: datetime, error: BaseException) -> datetime | None:
    """One attempt that fails with ``error``; the recording's ``not_before`` after it."""
    c = claim(sessions, rid, at)
    with transaction(sessions) as s:
        lifecycle.fail_attempt(s, c, error=error, now=at, policy=POLICY, notify=True)
    return column(sessions, rid, Recording.not_before)


def column(sessions: sessionmaker[Session], rid: uuid.UUID, what: Any) -> Any:
    with sessions() as s:
        return s.scalar(select(what).where(Recording.id == rid))


@pytest.fixture
def busy(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """A deployment an hour into its day: completions, failures of three causes, backoff, work in progress."""
    seen: dict[str, Any] = {}
    # Completed: 60 s of audio in 30 s of work (0.5), and 120 s in 6 s (0.05, on a bucket bound) flagged.
    complete(sessions, register(sessions, T0), claimed=T0, took=30, audio=60, review=False)
    complete(sessions, register(sessions, T0), claimed=T0 + timedelta(seconds=100), took=6, audio=120, review=True)
    # Failed for good: unreadable at once; four timeouts (3 retries, each claimed when its backoff ends).
    fail(sessions, register(sessions, T0), T0 + timedelta(seconds=200), PermanentError("Unreadable audio: bad header"))
    timeouts, at = register(sessions, T0), T0 + timedelta(seconds=300)
    for _ in range(4):
        at = fail(sessions, timeouts, at, AttemptTimeout(1800)) or at
    # Queued and due since its backoff ended (not since it was requeued): one timeout at T0+500.
    backed_off = register(sessions, T0)
    seen["backoff_over"] = fail(sessions, backed_off, T0 + timedelta(seconds=500), AttemptTimeout(1800))
    # Queued and due since it was registered, later; and one just now.
    register(sessions, T0 + timedelta(seconds=600))
    register(sessions, NOW - timedelta(seconds=60))
    # Processing: one with a heartbeat 20 s ago (claimed 50 s ago, the last claim); one silent for 100 s.
    fresh = claim(sessions, register(sessions, T0), NOW - timedelta(seconds=50))
    with transaction(sessions) as s:
        lifecycle.save_progress(s, fresh, now=NOW - timedelta(seconds=20), first_idx=0, segments=[],
                                progress_seconds=10.0)  # fmt: skip
    claim(sessions, register(sessions, T0), NOW - timedelta(seconds=100))
    # Worker lost: silent since NOW-400, rescued 3 s ago and waiting out its backoff (5-10 s): queued, not due.
    claim(sessions, register(sessions, T0 - timedelta(minutes=5)), NOW - timedelta(seconds=400))
    with transaction(sessions) as s:
        rescued = lifecycle.rescue_stuck(s, now=NOW - timedelta(seconds=3), stuck_timeout=300, policy=POLICY)
    assert rescued is not None and [r.status.value for r in rescued] == ["queued"]
    # Skipped by an operator before any run.
    skipped = register(sessions, T0)
    with transaction(sessions) as s:
        lifecycle.skip_recordings(s, now=T0, ids=[skipped])
        lifecycle.record_service_run(s, name="cleanup_stuck", now=NOW - timedelta(seconds=30), detail="rescued 1")
    # A beat's own row (doctor's two-beats check) is no job: no series of its own, one per beat restart.
    maintenance.record_beat_tick(sessions, host="beat-host", pid=4242, now=NOW - timedelta(seconds=2))
    # Webhooks: the first completion's event delivered, the needs_review one given up on, the rest pending.
    with transaction(sessions) as s:
        events = s.execute(select(WebhookEvent.id, WebhookEvent.event).order_by(WebhookEvent.id)).all()
        assert [e for _, e in events] == ["recording.completed", "recording.completed", "recording.needs_review",
                                          "recording.failed", "recording.failed"]  # fmt: skip
        for (event_id, _), status in zip(events[:3], ("delivered", "pending", "failed"), strict=True):
            s.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(status=status))
    return seen


# ---------------------------------------------------------------- scraping


@pytest.fixture
def server(sessions: sessionmaker[Session]) -> Iterator[metrics.MetricsServer]:
    with metrics.start_server(sessions, address="127.0.0.1", port=0, clock=lambda: NOW) as running:
        yield running


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(sessions: sessionmaker[Session], now: datetime = NOW) -> Samples:
    """The exporter's page without HTTP (the alert tests; HTTP is tested above them)."""
    registry = CollectorRegistry()
    registry.register(metrics.Collector(sessions, clock=lambda: now))
    return parse(generate_latest(registry).decode())


def plain(samples: Samples) -> dict[str, float]:
    """Sample name (with its labels, if any) -> value, for readable comparisons."""
    return {name + "".join(f"{{{k}={v}}}" for k, v in sorted(labels)): v for (name, labels), v in samples.items()}


def test_a_scrape_reports_the_lifecycle_exactly(
    sessions: sessionmaker[Session], busy: dict[str, Any], server: metrics.MetricsServer
) -> None:
    samples = plain(parse(fetch(server.url)))
    assert samples.pop("transcriber_scrape_duration_seconds") >= 0
    backoff_over = busy["backoff_over"]
    assert T0 + timedelta(seconds=505) <= backoff_over <= T0 + timedelta(seconds=510)
    hours = 3600.0
    assert samples == {
        "transcriber_database_up": 1,
        "transcriber_recordings{status=queued}": 4,
        "transcriber_recordings{status=processing}": 2,
        "transcriber_recordings{status=completed}": 2,
        "transcriber_recordings{status=failed}": 2,
        "transcriber_recordings{status=skipped}": 1,
        "transcriber_queued_due": 3,  # not the one rescued 3 s ago, still in its backoff
        "transcriber_oldest_queued_seconds": hours + 300,  # the rescued one, registered at T0 - 5 min
        "transcriber_oldest_due_seconds": (NOW - backoff_over).total_seconds(),
        "transcriber_oldest_heartbeat_seconds": 100,
        "transcriber_last_heartbeat_timestamp_seconds": (NOW - timedelta(seconds=20)).timestamp(),
        "transcriber_last_attempt_started_timestamp_seconds": (NOW - timedelta(seconds=50)).timestamp(),
        "transcriber_last_completed_timestamp_seconds": (T0 + timedelta(seconds=106)).timestamp(),
        "transcriber_needs_review": 1,
        "transcriber_attempts_total{outcome=succeeded}": 2,
        "transcriber_attempts_total{outcome=timeout}": 5,
        "transcriber_attempts_total{outcome=failed}": 1,
        "transcriber_attempts_total{outcome=lost}": 1,
        **{f"transcriber_failures_total{{cause={cause}}}": 0 for cause in CAUSES},
        "transcriber_failures_total{cause=timeout}": 5,
        "transcriber_failures_total{cause=unreadable}": 1,
        "transcriber_failures_total{cause=worker_lost}": 1,
        "transcriber_audio_seconds_total": 180,
        **{
            f"transcriber_realtime_factor_bucket{{le={le}}}": count
            for le, count in (
                ("0.05", 1),
                ("0.1", 1),
                ("0.2", 1),
                ("0.3", 1),
                ("0.5", 2),
                ("0.75", 2),
                ("1.0", 2),
                ("1.5", 2),
                ("2.0", 2),
                ("5.0", 2),
                ("+Inf", 2),
            )
        },  # fmt: skip
        "transcriber_realtime_factor_count": 2,
        "transcriber_realtime_factor_sum": pytest.approx(0.55),
        "transcriber_webhook_pending": 3,
        "transcriber_webhook_failed": 1,
        "transcriber_webhook_oldest_pending_seconds": hours - 106,  # the second completion's event
        "transcriber_beat_last_run_timestamp_seconds{task=cleanup_stuck}": (NOW - timedelta(seconds=30)).timestamp(),
        "transcriber_beat_last_run_timestamp_seconds{task=dispatch_queued}": 0,
    }
    assert {name for name, _ in parse(fetch(server.url))} == metrics.SAMPLE_NAMES


def test_an_empty_database_serves_every_series_at_zero(server: metrics.MetricsServer) -> None:
    samples = plain(parse(fetch(server.url)))
    assert samples.pop("transcriber_database_up") == 1
    assert samples.pop("transcriber_scrape_duration_seconds") >= 0
    assert set(samples.values()) == {0}
    assert len(samples) == 5 + 4 + len(CAUSES) + 11 + 1 + 2 + 13  # audio, beat, histogram


# ---------------------------------------------------------------- the alert rules


def alert(name: str) -> str:
    [rule] = [
        r for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for r in group["rules"]
        if r["alert"] == name
    ]  # fmt: skip
    return str(rule["expr"])


def fires(name: str, samples: Samples, now: datetime = NOW) -> bool:
    return bool(PromQL(samples, now.timestamp()).evaluate(alert(name)))


def test_the_alerts_fire_on_a_failed_recording_and_not_on_a_moving_queue(
    sessions: sessionmaker[Session], busy: dict[str, Any]
) -> None:
    samples = scrape(sessions)
    assert fires("TranscriberRecordingFailed", samples)
    # Recordings have waited for up to 50 minutes, but workers take them and report: the queue moves.
    assert not fires("TranscriberQueueStuck", samples)
    assert not fires("TranscriberDatabaseDown", samples)


def test_no_alert_on_a_quiet_deployment(sessions: sessionmaker[Session]) -> None:
    samples = scrape(sessions)
    assert not fires("TranscriberRecordingFailed", samples)
    assert not fires("TranscriberQueueStuck", samples)


def test_a_queue_that_does_not_move_fires(sessions: sessionmaker[Session]) -> None:
    # The last claim at T0 completed; since then two recordings have waited, nobody takes them.
    complete(sessions, register(sessions, T0), claimed=T0, took=10, audio=30, review=False)
    register(sessions, NOW - timedelta(minutes=16))
    register(sessions, NOW - timedelta(minutes=2))
    assert fires("TranscriberQueueStuck", scrape(sessions))
    earlier = NOW - timedelta(minutes=2)
    assert not fires("TranscriberQueueStuck", scrape(sessions, now=earlier), now=earlier)  # 14 min: not yet
    assert not fires("TranscriberRecordingFailed", scrape(sessions))


def test_a_recording_waiting_out_its_backoff_is_not_stuck(sessions: sessionmaker[Session]) -> None:
    # Registered 2 h ago; its only attempt timed out 31 min ago (nothing started since) and it may run again
    # in an hour or two: nobody should take it yet, so nothing is stuck.
    rid = register(sessions, NOW - timedelta(hours=2))
    c = claim(sessions, rid, NOW - timedelta(minutes=31))
    slow = lifecycle.RetryPolicy(max_retries=3, backoff_base=7200, backoff_cap=7200)
    with transaction(sessions) as s:
        lifecycle.fail_attempt(s, c, error=AttemptTimeout(1800), now=NOW - timedelta(minutes=31), policy=slow)
    assert column(sessions, rid, Recording.not_before) > NOW
    samples = scrape(sessions)
    assert plain(samples)["transcriber_oldest_queued_seconds"] == 7200
    assert plain(samples)["transcriber_queued_due"] == 0
    assert not fires("TranscriberQueueStuck", samples)


def test_a_recording_handed_back_has_waited_since_then(sessions: sessionmaker[Session]) -> None:
    # Registered 2 h ago, taken 40 min ago, handed back 10 min ago by a worker that stopped.
    rid = register(sessions, NOW - timedelta(hours=2))
    c = claim(sessions, rid, NOW - timedelta(minutes=40))
    with transaction(sessions) as s:
        lifecycle.release_claim(s, c, now=NOW - timedelta(minutes=10), reason="Worker stopping: handed back")
    samples = plain(scrape(sessions))
    assert (samples["transcriber_oldest_queued_seconds"], samples["transcriber_oldest_due_seconds"]) == (7200, 600)


def test_busy_workers_on_long_calls_are_not_stuck(sessions: sessionmaker[Session]) -> None:
    # The only worker took a 2-hour call 40 min ago and beats; another call has waited for 30 min.
    busy = claim(sessions, register(sessions, NOW - timedelta(hours=1)), NOW - timedelta(minutes=40))
    with transaction(sessions) as s:
        lifecycle.save_progress(s, busy, now=NOW - timedelta(seconds=5), first_idx=0, segments=[],
                                progress_seconds=3000.0)  # fmt: skip
    register(sessions, NOW - timedelta(minutes=30))
    assert not fires("TranscriberQueueStuck", scrape(sessions))
    # The same worker, silent: nothing takes the waiting call and nothing reports.
    later = NOW + timedelta(minutes=3)
    assert fires("TranscriberQueueStuck", scrape(sessions, now=later), now=later)


class PromQL:
    """Instant evaluation of the PromQL the rules use: selectors, ``time()``, arithmetic and comparisons with
    scalars, ``and on()`` / ``unless on()`` / ``or`` and parentheses. A vector is a list of (labels, value)."""

    TOKEN = re.compile(r'\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_:][A-Za-z0-9_:]*)|("[^"]*")|(==|!=|>=|<=|[-+*/(){}<>,=]))')

    def __init__(self, samples: Samples, now: float) -> None:
        self.samples, self.now = samples, now
        self.tokens: list[str] = []

    def evaluate(self, expr: str) -> list[tuple[dict[str, str], float]]:
        self.tokens = [next(t for t in m.groups() if t) for m in self.TOKEN.finditer(expr.strip())]
        assert "".join(self.tokens) == re.sub(r"\s+", "", expr), f"cannot read {expr!r}"
        result = self.set_ops()
        assert not self.tokens, f"left over in {expr!r}: {self.tokens}"
        assert isinstance(result, list), f"{expr!r} is a scalar"
        return result

    def take(self, *expected: str) -> str | None:
        if self.tokens and self.tokens[0] in expected:
            return self.tokens.pop(0)
        return None

    def set_ops(self) -> Any:
        left = self.comparison()
        while op := self.take("and", "unless", "or"):
            if op != "or":
                assert [self.tokens.pop(0) for _ in range(3)] == ["on", "(", ")"], "only on() matching"
            right = self.comparison()
            left = {"and": left if right else [], "unless": [] if right else left, "or": left + right}[op]
        return left

    def comparison(self) -> Any:
        left = self.arithmetic()
        if op := self.take(">", "<", ">=", "<=", "==", "!="):
            right = self.arithmetic()
            assert isinstance(right, float), "comparisons with a number only"
            test = {">": float.__gt__, "<": float.__lt__, ">=": float.__ge__, "<=": float.__le__,
                    "==": float.__eq__, "!=": float.__ne__}[op]  # fmt: skip
            return [(labels, value) for labels, value in left if test(value, right)]
        return left

    def arithmetic(self) -> Any:
        left = self.atom()
        while op := self.take("+", "-", "*", "/"):
            right = self.atom()
            calc = {"+": float.__add__, "-": float.__sub__, "*": float.__mul__, "/": float.__truediv__}[op]
            if isinstance(left, float) and isinstance(right, float):
                left = calc(left, right)
            elif isinstance(left, float):
                left = [(labels, calc(left, value)) for labels, value in right]
            else:
                assert isinstance(right, float), "vector with vector arithmetic is not used"
                left = [(labels, calc(value, right)) for labels, value in left]
        return left

    def atom(self) -> Any:
        token = self.tokens.pop(0)
        if token == "(":
            inner = self.set_ops()
            assert self.tokens.pop(0) == ")"
            return inner
        if token[0].isdigit():
            return float(token)
        if token == "time":
            assert [self.tokens.pop(0), self.tokens.pop(0)] == ["(", ")"]
            return self.now
        matchers: dict[str, str] = {}
        if self.take("{"):
            while not self.take("}"):
                label, equals, value = self.tokens.pop(0), self.tokens.pop(0), self.tokens.pop(0)
                assert equals == "=" and value.startswith('"'), 'only label="value" matchers'
                matchers[label] = value.strip('"')
                self.take(",")
        return [
            (dict(labels), value)
            for (name, labels), value in self.samples.items()
            if name == token and matchers.items() <= dict(labels).items()
        ]


def test_the_promql_subset_reads_like_prometheus() -> None:
    samples: Samples = {
        ("a", frozenset({("k", "x")})): 5.0,
        ("a", frozenset({("k", "y")})): 1.0,
        ("b", frozenset()): 2.0,
    }
    q = PromQL(samples, now=100.0)
    assert q.evaluate('a{k="x"} > 3') == [({"k": "x"}, 5.0)]
    assert q.evaluate("a > 3 unless on() b > 1") == []
    assert q.evaluate("a > 3 and on() (time() - b) > 97") == [({"k": "x"}, 5.0)]
    assert q.evaluate("(time() - b) < 99") == [({}, 98.0)]
    assert q.evaluate("c > 0 or a < 2") == [({"k": "y"}, 1.0)]


# ---------------------------------------------------------------- when it cannot do its work


def test_a_database_that_is_down_is_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'later.db'}"  # no tables yet: as bad as no server, and it can be fixed
    engine = make_engine(url)
    try:
        with (
            metrics.start_server(make_session_factory(engine), address="127.0.0.1", port=0) as running,
            caplog.at_level(logging.DEBUG, logger="transcriber.metrics"),
        ):
            first, second = plain(parse(fetch(running.url))), plain(parse(fetch(running.url)))
            upgrade_to_head(url)
            third = plain(parse(fetch(running.url)))
    finally:
        engine.dispose()
    for down in (first, second):
        assert set(down) == {"transcriber_database_up", "transcriber_scrape_duration_seconds"}
        assert down["transcriber_database_up"] == 0
    assert third["transcriber_database_up"] == 1 and third["transcriber_recordings{status=failed}"] == 0
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "transcriber.metrics"]
    assert said == [
        ("WARNING", "metrics: cannot read the database (no such table: recordings); serving transcriber_database_up 0"),
        ("DEBUG", "metrics: cannot read the database (no such table: recordings); serving transcriber_database_up 0"),
        ("INFO", "metrics: the database answers again"),
    ]


def test_an_unreachable_server_is_reported_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    engine = metrics._engine("postgresql+psycopg2://transcriber:s3cret-pw@127.0.0.1:1/transcriber")
    try:
        with caplog.at_level(logging.WARNING, logger="transcriber.metrics"):
            samples = plain(scrape(make_session_factory(engine)))
    finally:
        engine.dispose()
    assert samples["transcriber_database_up"] == 0 and len(samples) == 2
    [line] = [r.getMessage() for r in caplog.records if r.name == "transcriber.metrics"]
    assert line.startswith("metrics: cannot read the database (") and "s3cret-pw" not in line


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


@pytest.fixture
def sqlite_sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    yield make_session_factory(engine)
    engine.dispose()


def test_a_port_in_use_is_one_line(sqlite_sessions: sessionmaker[Session], taken_port: int) -> None:
    with pytest.raises(ConfigError) as caught:
        metrics.start_server(sqlite_sessions, address="127.0.0.1", port=taken_port)
    message = str(caught.value)
    assert message.startswith(f"METRICS_PORT={taken_port} is in use: ") and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_address_of_another_machine_is_one_line(sqlite_sessions: sessionmaker[Session]) -> None:
    with pytest.raises(ConfigError, match=r"^METRICS_ADDRESS=192\.0\.2\.1 cannot be used: "):
        metrics.start_server(sqlite_sessions, address="192.0.2.1", port=0)  # TEST-NET-1: never this machine's


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_answers_until_stopped_and_frees_its_port(
    sqlite_url: str, sqlite_sessions: sessionmaker[Session]
) -> None:
    port = free_port()
    settings = Settings(_env_file=None, database_url=sqlite_url, metrics_port=port)  # type: ignore[call-arg]
    stop, failed = threading.Event(), []

    def run() -> None:
        try:
            metrics.serve(settings, stop)
        except BaseException as exc:  # shown by the assertion below
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        page = wait_for_page(f"http://127.0.0.1:{port}/metrics", thread)
        assert plain(parse(page))["transcriber_database_up"] == 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and failed == []
    with metrics.start_server(sqlite_sessions, address="127.0.0.1", port=port):  # a restart can listen at once
        pass


def wait_for_page(url: str, thread: threading.Thread) -> str:
    """The page once the server listens: connection refused until then, while the thread runs."""
    for _ in range(200):
        try:
            return fetch(url)
        except OSError as exc:
            reason = getattr(exc, "reason", exc)
            assert getattr(reason, "errno", None) == errno.ECONNREFUSED and thread.is_alive(), exc
            threading.Event().wait(0.05)
    raise AssertionError(f"{url} did not answer in 10 s")


def test_the_page_is_prometheus_text(server: metrics.MetricsServer) -> None:
    with urllib.request.urlopen(server.url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", server.url)
