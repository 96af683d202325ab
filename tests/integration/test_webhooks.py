"""Webhook delivery from the outbox to a real local HTTP receiver, on Postgres and SQLite.

The receiver is ``http.server`` on 127.0.0.1 in a thread; it refuses, accepts or hangs as each
test scripts it. Time is driven with ``now=``; the tests wait only on state (with a deadline).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle, webhooks
from transcriber.db import make_engine, make_session_factory, transaction
from transcriber.errors import PermanentError
from transcriber.segments import Segment
from transcriber.settings import Settings
from transcriber.tables import WebhookEvent
from transcriber.transcripts import load_segments

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # in the past: the loop's own clock finds these events due
POLICY = lifecycle.RetryPolicy(max_retries=3, backoff_base=10, backoff_cap=600)
SECRET = "test-secret-0123456789"
TOKEN = "tok-s3cr3t-in-the-url"
DEADLINE = 30.0  # a failure guard only: every wait ends on state


# ---------------------------------------------------------------- the receiver


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


Answer = int | str | tuple[int, dict[str, str]]  # a status, "hang", or a status with headers


class Receiver:
    """A real HTTP server. ``answer(n)`` says what the n-th POST (1-based) gets."""

    def __init__(self, answer: Callable[[int], Answer]) -> None:
        self.answer = answer
        self.requests: list[Received] = []
        self.in_flight = 0
        self.changed = threading.Condition()
        self.release = threading.Event()  # ends every hang (with 200)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.changed:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    receiver.in_flight += 1
                    n = len(receiver.requests)
                    receiver.changed.notify_all()
                try:
                    self._answer(receiver.answer(n))
                finally:
                    with receiver.changed:
                        receiver.in_flight -= 1
                        receiver.changed.notify_all()

            def _answer(self, answer: Answer) -> None:
                if answer == "hang":  # the connection is open; no answer until the test lets go
                    receiver.release.wait(DEADLINE * 2)
                    answer = 200
                status, headers = answer if isinstance(answer, tuple) else (int(answer), {})
                text = b"ok" if status < 300 else f"{self.responses[status][0]}\n(details)".encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text)))
                try:
                    self.end_headers()
                    self.wfile.write(text)
                except (BrokenPipeError, ConnectionResetError):  # the deliverer timed out and hung up first
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/{TOKEN}?token={TOKEN}"

    def wait_for(self, predicate: Callable[[Receiver], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), timeout=DEADLINE), "receiver never got there"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[[Callable[[int], Answer]], Receiver]]:
    started: list[Receiver] = []

    def start(answer: Callable[[int], Answer]) -> Receiver:
        started.append(Receiver(answer))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_url": url,
        "webhook_secret": SECRET,
        "webhook_timeout_seconds": 5.0,
        "webhook_max_attempts": 5,
        "webhook_backoff_seconds": 10.0,
        "webhook_backoff_max_seconds": 600.0,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- the lifecycle writes the events


def start_recording(sessions: sessionmaker[Session], now: datetime = T0) -> lifecycle.Claim:
    name = f"{uuid.uuid4().hex[:8]}.m4a"
    with transaction(sessions) as s:
        rec, _ = lifecycle.register_recording(
            s, file_path=f"/in/{name}", file_name=name, file_size=10, content_sha256=uuid.uuid4().hex * 2, now=now
        )
    with transaction(sessions) as s:
        claim = lifecycle.claim_recording(s, recording_id=rec.id, task_id=uuid.uuid4().hex, worker="w1", now=now)
    assert claim is not None
    return claim


def complete(sessions: sessionmaker[Session], now: datetime = T0) -> uuid.UUID:
    """A recording transcribed and completed, its ``recording.completed`` written in the same commit."""
    claim = start_recording(sessions, now)
    segs = [Segment(0.0, 2.0, " Hello there."), Segment(2.0, 4.5, " Goodbye.")]
    with transaction(sessions) as s:
        lifecycle.save_progress(s, claim, now=now, first_idx=0, segments=segs, progress_seconds=4.5)
        lifecycle.complete_recording(
            s,
            claim,
            segments=load_segments(s, claim.recording_id),
            now=now + timedelta(seconds=5),
            language="en",
            duration_seconds=4.5,
            notify=True,
        )
    return claim.recording_id


def fail(sessions: sessionmaker[Session], now: datetime = T0) -> uuid.UUID:
    claim = start_recording(sessions, now)
    with transaction(sessions) as s:
        lifecycle.fail_attempt(
            s, claim, error=PermanentError("Unreadable audio: bad header"), now=now, policy=POLICY, notify=True
        )
    return claim.recording_id


def events(sessions: sessionmaker[Session]) -> list[WebhookEvent]:
    with sessions() as s:
        return list(s.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def only_event(sessions: sessionmaker[Session]) -> WebhookEvent:
    [event] = events(sessions)
    return event


def verified(received: Received) -> dict[str, Any]:
    """What a receiver does: check the signature over the raw bytes, then parse."""
    assert webhooks.verify(
        SECRET,
        received.body,
        timestamp=received.headers["X-Transcriber-Timestamp"],
        signature=received.headers["X-Transcriber-Signature"],
    )
    body: dict[str, Any] = json.loads(received.body)
    return body


# ---------------------------------------------------------------- the tests


def test_lifecycle_events_are_delivered_signed_oldest_first(
    sessions: sessionmaker[Session], receivers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = receivers(lambda n: 200)
    done_id, failed_id = complete(sessions), fail(sessions)
    settings = settings_for(receiver.url)

    counts = webhooks.deliver_due(sessions, settings, now=T0 + timedelta(seconds=10), concurrency=1)

    assert (counts.delivered, counts.retrying, counts.failed) == (2, 0, 0)
    stored = events(sessions)
    assert [r.body for r in receiver.requests] == [e.body.encode() for e in stored]  # byte for byte
    first, second = (verified(r) for r in receiver.requests)
    assert (first["event"], first["recording_id"], first["status"]) == (
        "recording.completed",
        str(done_id),
        "completed",
    )
    assert (second["event"], second["recording_id"], second["status"]) == ("recording.failed", str(failed_id), "failed")
    assert second["error_message"] == "Unreadable audio: bad header"
    assert (second["cause"], second["retry_count"]) == ("unreadable", 0)
    for received, event in zip(receiver.requests, stored, strict=True):
        assert received.headers["X-Transcriber-Event-Id"] == event.event_id == json.loads(received.body)["event_id"]
        assert received.headers["X-Transcriber-Event"] == event.event
        assert received.headers["Content-Type"] == "application/json"
        assert received.headers["User-Agent"].startswith("transcriber/")
        assert received.path == f"/hooks/T0/{TOKEN}?token={TOKEN}"
        assert not webhooks.verify("another secret", received.body, timestamp=received.headers[
            "X-Transcriber-Timestamp"], signature=received.headers["X-Transcriber-Signature"])  # fmt: skip
    assert [(e.status, e.attempts, e.delivered_at) for e in stored] == [
        ("delivered", 1, T0 + timedelta(seconds=10))
    ] * 2
    assert TOKEN not in caplog.text and SECRET not in caplog.text


def test_a_receiver_that_answers_503_twice_gets_it_on_the_third_try(
    sessions: sessionmaker[Session], receivers: Any
) -> None:
    receiver = receivers(lambda n: {1: 503, 2: (503, {"Retry-After": "120"})}.get(n, 200))
    complete(sessions)
    settings = settings_for(receiver.url)
    now = T0 + timedelta(seconds=10)

    assert webhooks.deliver_due(sessions, settings, now=now).retrying == 1
    event = only_event(sessions)
    assert (event.status, event.attempts, event.last_error) == ("pending", 1, "HTTP 503: Service Unavailable")
    assert event.next_attempt_at is not None
    assert timedelta(seconds=5) <= event.next_attempt_at - now <= timedelta(seconds=10)  # compute_backoff(10, 1)
    assert webhooks.deliver_due(sessions, settings, now=event.next_attempt_at - timedelta(seconds=1)).attempted == 0

    now = event.next_attempt_at
    assert webhooks.deliver_due(sessions, settings, now=now).retrying == 1
    event = only_event(sessions)
    assert (event.status, event.attempts) == ("pending", 2)
    assert event.next_attempt_at == now + timedelta(seconds=120)  # its Retry-After: 120 outweighs the backoff

    now = event.next_attempt_at
    assert webhooks.deliver_due(sessions, settings, now=now).delivered == 1
    event = only_event(sessions)
    assert (event.status, event.attempts, event.delivered_at) == ("delivered", 3, now)
    assert webhooks.deliver_due(sessions, settings, now=now + timedelta(days=1)).attempted == 0  # delivered once
    assert len(receiver.requests) == 3
    assert {r.body for r in receiver.requests} == {event.body.encode()}
    assert {r.headers["X-Transcriber-Event-Id"] for r in receiver.requests} == {event.event_id}
    assert [r.headers["X-Transcriber-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
    for received in receiver.requests:
        verified(received)


def test_a_hanging_receiver_times_out_and_stays_pending(sessions: sessionmaker[Session], receivers: Any) -> None:
    receiver = receivers(lambda n: "hang")
    complete(sessions)
    settings = settings_for(receiver.url, webhook_timeout_seconds=0.5)

    counts = webhooks.deliver_due(sessions, settings, now=T0 + timedelta(seconds=10))

    event = only_event(sessions)
    assert (counts.retrying, event.status, event.attempts) == (1, "pending", 1)
    assert event.last_error == "timed out waiting for an answer (after 0.5 s)"


def test_transcription_goes_on_while_a_delivery_hangs(sessions: sessionmaker[Session], receivers: Any) -> None:
    receiver = receivers(lambda n: "hang" if n == 1 else 200)
    complete(sessions)
    stop = threading.Event()
    settings = settings_for(receiver.url, webhook_timeout_seconds=DEADLINE * 3)  # the POST stays in flight
    loop = threading.Thread(target=webhooks.run_delivery_loop, args=(sessions, settings, stop), kwargs={
        "poll_seconds": 0.05})  # fmt: skip
    loop.start()
    try:
        receiver.wait_for(lambda r: r.in_flight == 1)  # the loop's thread is stuck in the POST

        second = complete(sessions)  # the whole transcription path: register, claim, save, complete + outbox

        first_event, second_event = events(sessions)
        assert receiver.in_flight == 1 and not receiver.release.is_set()  # still hanging: nothing waited on it
        assert (first_event.status, first_event.attempts, first_event.last_error) == ("pending", 1, None)
        assert (second_event.status, second_event.attempts, second_event.recording_id) == ("pending", 0, second)

        receiver.release.set()
        deadline = time.monotonic() + DEADLINE
        while {e.status for e in events(sessions)} != {"delivered"}:
            assert time.monotonic() < deadline, [(e.status, e.last_error) for e in events(sessions)]
            time.sleep(0.05)
    finally:
        stop.set()
        receiver.release.set()
        loop.join(DEADLINE)
    assert not loop.is_alive()
    assert [r.headers["X-Transcriber-Event-Id"] for r in receiver.requests] == [e.event_id for e in events(sessions)]


def test_a_receiver_that_is_down_is_retried(sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    complete(sessions)
    url = f"http://127.0.0.1:{closed_port()}/hooks/{TOKEN}?token={TOKEN}"

    counts = webhooks.deliver_due(sessions, settings_for(url), now=T0 + timedelta(seconds=10))

    event = only_event(sessions)
    assert (counts.retrying, event.status, event.attempts) == (1, "pending", 1)
    assert event.last_error is not None and event.last_error.startswith("could not connect: ")
    assert event.next_attempt_at is not None and event.next_attempt_at > T0 + timedelta(seconds=10)
    assert TOKEN not in caplog.text and TOKEN not in event.last_error


def test_max_attempts_then_failed_then_retried_by_an_operator(sessions: sessionmaker[Session], receivers: Any) -> None:
    receiver = receivers(lambda n: 500 if n <= 2 else 200)
    complete(sessions)
    settings = settings_for(receiver.url, webhook_max_attempts=2)
    now = T0 + timedelta(seconds=10)

    assert webhooks.deliver_due(sessions, settings, now=now).retrying == 1
    assert webhooks.deliver_due(sessions, settings, now=now + timedelta(hours=1)).failed == 1
    event = only_event(sessions)
    assert (event.status, event.attempts, event.last_error) == ("failed", 2, "HTTP 500: Internal Server Error")
    assert webhooks.deliver_due(sessions, settings, now=now + timedelta(days=1)).attempted == 0  # given up

    later = now + timedelta(days=1)
    with sessions() as s:
        overview = webhooks.summary(s, now=later)
        listed = webhooks.list_events(s, status="failed")
    assert (overview["pending"], overview["failed"], overview["delivered"]) == (0, 1, 0)
    assert overview["last_error"]["error"] == "HTTP 500: Internal Server Error"
    assert [r["event_id"] for r in listed] == [event.event_id]
    assert "failed" in webhooks.format_summary(overview) and event.event_id[:8] in webhooks.format_events(listed)

    with transaction(sessions) as s:
        assert webhooks.retry_events(s, now=later) == [event.event_id]
    assert (only_event(sessions).status, only_event(sessions).attempts) == ("pending", 0)
    with sessions() as s:
        assert webhooks.summary(s, now=later + timedelta(seconds=30))["oldest_pending_age_seconds"] is not None
    assert webhooks.deliver_due(sessions, settings, now=later).delivered == 1
    assert only_event(sessions).status == "delivered"

    with transaction(sessions) as s:  # by (a first part of) its id, a delivered event is sent again
        assert webhooks.retry_events(s, now=later, event_ids=[event.event_id[:8]]) == [event.event_id]
    assert webhooks.deliver_due(sessions, settings, now=later).delivered == 1
    assert len(receiver.requests) == 4


def test_two_deliverers_at_once_send_each_event_once(sessions: sessionmaker[Session], receivers: Any) -> None:
    def answer(n: int) -> int:
        if n == 1:  # hold the first POST until the other deliverer's is in flight too
            receiver.wait_for(lambda r: r.in_flight >= 2)
        return 200

    receiver = receivers(answer)
    for _ in range(8):
        complete(sessions)
    settings = settings_for(receiver.url)
    results: list[webhooks.Counts] = []
    start = threading.Barrier(2)

    def deliverer() -> None:
        start.wait(DEADLINE)
        results.append(webhooks.deliver_due(sessions, settings, now=T0 + timedelta(seconds=10), concurrency=1))

    threads = [threading.Thread(target=deliverer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)

    stored = events(sessions)
    sent = [r.headers["X-Transcriber-Event-Id"] for r in receiver.requests]
    assert sorted(sent) == sorted(e.event_id for e in stored)  # each exactly once
    assert {(e.status, e.attempts) for e in stored} == {("delivered", 1)}
    assert sorted(c.delivered for c in results)[0] >= 1 and sum(c.delivered for c in results) == 8  # both worked


def test_a_deliverer_that_dies_after_the_post_is_redelivered(sessions: sessionmaker[Session], receivers: Any) -> None:
    receiver = receivers(lambda n: 200)
    complete(sessions)
    settings = settings_for(receiver.url)
    now = T0 + timedelta(seconds=10)
    with transaction(sessions) as s:
        [claimed] = webhooks.claim_due(s, now=now, lease_seconds=webhooks.lease_seconds(settings), limit=10)
    with webhooks.make_client(settings) as client:
        outcome = webhooks.post_event(client, claimed, url=receiver.url, secret=SECRET, timeout=5.0)
    # ... and the deliverer dies here, before it records the outcome
    assert outcome.delivered and len(receiver.requests) == 1

    assert webhooks.deliver_due(sessions, settings, now=now).attempted == 0  # its lease still holds
    later = now + timedelta(seconds=webhooks.lease_seconds(settings) + 1)
    assert webhooks.deliver_due(sessions, settings, now=later).delivered == 1

    event = only_event(sessions)
    assert (event.status, event.attempts) == ("delivered", 2)
    assert [r.headers["X-Transcriber-Event-Id"] for r in receiver.requests] == [event.event_id] * 2
    assert receiver.requests[0].body == receiver.requests[1].body == event.body.encode()


def test_beat_delivers_the_outbox_in_a_thread_of_its_own(
    pg_url: str, redis_url: str, tmp_path: Path, receivers: Any
) -> None:
    receiver = receivers(lambda n: 200)
    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": pg_url,
        "CELERY_BROKER_URL": redis_url,
        "DATA_DIR": str(tmp_path / "data"),
        "WEBHOOK_URL": receiver.url,
        "WEBHOOK_SECRET": SECRET,
    }
    log_path = tmp_path / "beat.log"
    with open(log_path, "wb") as log_file:
        beat = subprocess.Popen(
            [sys.executable, "-m", "transcriber.cli", "beat"], cwd=tmp_path, env=env, stdout=log_file, stderr=log_file
        )
    try:
        complete(sessions)  # written as a worker writes it; beat, already starting, delivers it
        receiver.wait_for(lambda r: len(r.requests) == 1)
        deadline = time.monotonic() + DEADLINE
        while only_event(sessions).status != "delivered":
            assert beat.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        verified(receiver.requests[0])
    finally:
        beat.terminate()
        beat.wait(DEADLINE)
        engine.dispose()
    output = log_path.read_text()
    assert "delivering webhooks to http://127.0.0.1:" in output
    assert TOKEN not in output and SECRET not in output


def test_delivered_events_are_deleted_after_keep_days_and_the_rest_stay(
    sessions: sessionmaker[Session], receivers: Any
) -> None:
    receiver = receivers(lambda n: 200 if n == 1 else 500)
    complete(sessions)
    complete(sessions)
    settings = settings_for(receiver.url, webhook_max_attempts=1)
    delivered_at = T0 + timedelta(seconds=10)
    counts = webhooks.deliver_due(sessions, settings, now=delivered_at, concurrency=1)
    assert (counts.delivered, counts.failed) == (1, 1)
    with transaction(sessions) as s:  # 30 days less a second: nothing is old enough yet
        assert webhooks.prune_delivered(s, now=delivered_at + timedelta(days=30, seconds=-1), keep_days=30) == 0
    with transaction(sessions) as s:
        assert webhooks.prune_delivered(s, now=delivered_at + timedelta(days=30, seconds=1), keep_days=30) == 1
    assert [e.status for e in events(sessions)] == ["failed"]  # what an operator may still retry is kept
