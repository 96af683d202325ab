"""Webhook signing, what an answer or an error counts as, and the next attempt: pure tables."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import httpx
import pytest

from transcriber.tables import DeliveryStatus
from transcriber.webhooks import (
    Delivery,
    Outcome,
    decide_next,
    headers_for,
    origin_of,
    outcome_of_error,
    outcome_of_response,
    parse_retry_after,
    scrub_url,
    sign,
    verify,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "s3cret"
BODY = '{"event": "recording.completed", "file_name": "Anruf Müller.m4a"}'.encode()
DELIVERY = Delivery(id=7, event_id="0b8e", event="recording.completed", body=BODY.decode(), attempt=3)


def test_the_signature_is_an_hmac_of_timestamp_dot_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1764590400." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, 1764590400) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("secret", "body", "timestamp", "now", "ok"),
    [
        (SECRET, BODY, "1764590400", 1764590400, True),
        (SECRET, BODY, "1764590400", 1764590400 + 299, True),  # within the tolerance, either side
        (SECRET, BODY, "1764590400", 1764590400 - 299, True),
        (SECRET, BODY, "1764590400", 1764590400 + 301, False),  # a replay, later
        ("other", BODY, "1764590400", 1764590400, False),
        (SECRET, BODY + b" ", "1764590400", 1764590400, False),  # one byte more
        (SECRET, BODY, "1764590401", 1764590401, False),  # the timestamp is covered too
        (SECRET, BODY, "soon", 1764590400, False),
    ],
)
def test_verify(secret: str, body: bytes, timestamp: str, now: float, ok: bool) -> None:
    signature = sign(SECRET, BODY, 1764590400)
    assert verify(secret, body, timestamp=timestamp, signature=signature, now=now) is ok


def test_headers_carry_the_event_and_a_signature_of_the_stored_bytes() -> None:
    headers = headers_for(DELIVERY, secret=SECRET, timestamp=1764590400)
    assert headers["X-Transcriber-Event"] == "recording.completed"
    assert headers["X-Transcriber-Event-Id"] == "0b8e"
    assert headers["X-Transcriber-Attempt"] == "3"
    assert headers["Content-Type"] == "application/json"
    assert verify(SECRET, BODY, timestamp=headers["X-Transcriber-Timestamp"],
                  signature=headers["X-Transcriber-Signature"], now=1764590400)  # fmt: skip


@pytest.mark.parametrize(
    ("status", "text", "retry_after", "expected"),
    [
        (200, "", None, Outcome(True)),
        (204, "", None, Outcome(True)),
        (299, "odd but fine", None, Outcome(True)),
        (503, "Service Unavailable\n<html>...", "120", Outcome(False, "HTTP 503: Service Unavailable", 120.0)),
        (429, "slow down", "7", Outcome(False, "HTTP 429: slow down", 7.0)),
        (500, "", "120", Outcome(False, "HTTP 500")),  # Retry-After counts on 429 and 503 only
        (401, "\n  bad signature  \nmore", None, Outcome(False, "HTTP 401: bad signature")),
        (404, "x" * 300, None, Outcome(False, "HTTP 404: " + "x" * 197 + "...")),
        (400, "tab\there\x07", None, Outcome(False, "HTTP 400: tab\\there\\x07")),
        (
            301,
            "",
            None,
            Outcome(False, "HTTP 301 (redirects are not followed: set WEBHOOK_URL to the final address)"),
        ),
    ],
)
def test_outcome_of_response(status: int, text: str, retry_after: str | None, expected: Outcome) -> None:
    assert outcome_of_response(status, text, retry_after=retry_after, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("30", 30.0),
        (" 30 ", 30.0),
        ("Tue, 01 Dec 2026 12:02:00 GMT", 120.0),
        ("Tue, 01 Dec 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("-5", None),
        ("soon", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ReadTimeout("timed out"), "timed out waiting for an answer (after 2.5 s)"),
        (httpx.ConnectTimeout("timed out"), "timed out connecting (after 2.5 s)"),
        (httpx.WriteTimeout("timed out"), "timed out sending (after 2.5 s)"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "could not connect: [Errno 111] Connection refused"),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            "the receiver broke the connection: Server disconnected without sending a response.",
        ),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), "ReadError: [Errno 104] Connection reset by peer"),
    ],
)
def test_outcome_of_error(exc: Exception, expected: str) -> None:
    assert outcome_of_error(exc, timeout=2.5) == Outcome(False, expected)


def _next(outcome: Outcome, attempts: int, max_attempts: int = 5, jitter: float = 0.0) -> tuple[object, ...]:
    d = decide_next(
        outcome, attempts=attempts, max_attempts=max_attempts, now=NOW, backoff_base=10, backoff_cap=600, jitter=jitter
    )
    return d.status, (d.next_attempt_at - NOW).total_seconds() if d.next_attempt_at else None, d.last_error


@pytest.mark.parametrize(
    ("outcome", "attempts", "jitter", "expected"),
    [
        (Outcome(True), 1, 0.0, (DeliveryStatus.DELIVERED, None, None)),
        (Outcome(True), 5, 0.0, (DeliveryStatus.DELIVERED, None, None)),  # the last attempt can still succeed
        (Outcome(False, "HTTP 503"), 1, 0.0, (DeliveryStatus.PENDING, 5.0, "HTTP 503")),  # compute_backoff(10, 1)
        (Outcome(False, "HTTP 503"), 1, 0.5, (DeliveryStatus.PENDING, 7.5, "HTTP 503")),
        (Outcome(False, "HTTP 503"), 3, 0.0, (DeliveryStatus.PENDING, 20.0, "HTTP 503")),
        (Outcome(False, "HTTP 503"), 4, 0.999, (DeliveryStatus.PENDING, pytest.approx(79.96), "HTTP 503")),
        (Outcome(False, "HTTP 429", 120.0), 1, 0.0, (DeliveryStatus.PENDING, 120.0, "HTTP 429")),  # Retry-After
        (Outcome(False, "HTTP 429", 1.0), 3, 0.0, (DeliveryStatus.PENDING, 20.0, "HTTP 429")),  # never sooner
        (Outcome(False, "HTTP 429", 86400.0), 1, 0.0, (DeliveryStatus.PENDING, 600.0, "HTTP 429")),  # capped
        (Outcome(False, "timed out"), 5, 0.0, (DeliveryStatus.FAILED, None, "timed out")),  # attempts spent
    ],
)
def test_decide_next(outcome: Outcome, attempts: int, jitter: float, expected: tuple[object, ...]) -> None:
    assert _next(outcome, attempts, jitter=jitter) == expected


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://hooks.example/T0/abc?token=xyz", "https://hooks.example"),
        ("http://user:pw@127.0.0.1:8080/in", "http://127.0.0.1:8080"),
        ("https://HOOKS.example.com:443/a", "https://hooks.example.com:443"),
    ],
)
def test_only_the_origin_of_a_url_is_shown(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_scrub_url_masks_path_query_and_password() -> None:
    url = "https://bot:pa55@hooks.example/T0/abc?token=xyz"
    text = f"404 Not Found: /T0/abc?token=xyz; see {url}; query token=xyz; path /T0/abc"
    scrubbed = scrub_url(text, url)
    assert "xyz" not in scrubbed and "abc" not in scrubbed and "pa55" not in scrubbed
    assert scrubbed.startswith("404 Not Found: ***")
