"""Deliver the webhook outbox: every event POSTed, signed, until the receiver takes it (at least once).

``outbox.emit`` writes the rows in the transaction of the state change; this module sends them,
from beat's delivery thread (``start_delivery_thread``) or ``transcriber webhooks deliver``, never
from a worker: a slow or dead receiver cannot hold up a transcription. Life of an event::

    pending --claim_due (one short transaction: attempts + 1, lease until now + lease_seconds)--> POST
        POST, outside any transaction --2xx--> delivered
        anything else, attempts left --> pending, due again after a backoff (Retry-After honoured)
        anything else, WEBHOOK_MAX_ATTEMPTS spent --> failed (kept; ``retry_events`` makes it pending)
        deliverer crashed or hung past its lease --> pending and due again: redelivered, same bytes

No database lock or transaction is held while a POST is in flight, and a claim is one short
transaction (``FOR UPDATE SKIP LOCKED`` on Postgres), so several deliverers never send one
event twice unless one of them outlives its lease. Receivers deduplicate on
``event_id``: delivery is at least once, and events of one recording may arrive out of order.

Every POST carries the stored ``body`` byte for byte (UTF-8), and::

    X-Transcriber-Timestamp: <unix seconds when this attempt was sent>
    X-Transcriber-Signature: sha256=<hex HMAC-SHA256(WEBHOOK_SECRET, b"<timestamp>." + body)>

The HMAC is of the raw body with the timestamp and a dot in front (as Stripe and Slack sign), so
a captured delivery cannot be replayed later: ``verify`` is the check a receiver makes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from transcriber import __version__
from transcriber.db import describe_error, transaction
from transcriber.errors import TranscriberError
from transcriber.names import printable
from transcriber.redact import redact_text
from transcriber.retry import compute_backoff
from transcriber.settings import Settings
from transcriber.tables import DeliveryStatus, WebhookEvent, utcnow

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Transcriber-Signature"
TIMESTAMP_HEADER = "X-Transcriber-Timestamp"
EVENT_HEADER = "X-Transcriber-Event"
EVENT_ID_HEADER = "X-Transcriber-Event-Id"
ATTEMPT_HEADER = "X-Transcriber-Attempt"  # informational, not signed
SIGNATURE_TOLERANCE_SECONDS = 300.0
PRUNE_EVERY = timedelta(hours=1)  # how often the delivery loop deletes events older than WEBHOOK_KEEP_DAYS
CONCURRENCY = 4  # POSTs in flight at once per deliverer: a hanging receiver costs one timeout per batch
_ERROR_BODY_BYTES = 1024  # of an error answer, read for last_error


# ---------------------------------------------------------------- signing (pure)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Transcriber-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str,
    body: bytes,
    *,
    timestamp: str,
    signature: str,
    now: float | None = None,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver checks: the signature matches the raw body and the timestamp is recent.

    ``timestamp`` and ``signature`` are the header values as received; ``now`` is the receiver's
    clock in unix seconds. Compare in constant time, on the bytes as received (never re-serialised).
    """
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, sent), signature.strip())


def headers_for(delivery: Delivery, *, secret: str, timestamp: int) -> dict[str, str]:
    """The headers of one POST of ``delivery``, signed at ``timestamp``."""
    return {
        "Content-Type": "application/json",
        "User-Agent": f"transcriber/{__version__}",
        EVENT_HEADER: delivery.event,
        EVENT_ID_HEADER: delivery.event_id,
        ATTEMPT_HEADER: str(delivery.attempt),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, delivery.body.encode(), timestamp),
    }


# ---------------------------------------------------------------- decisions (pure)


@dataclass(frozen=True)
class Outcome:
    """What one POST came to: taken, or the error an operator reads (``last_error``)."""

    delivered: bool
    error: str | None = None
    retry_after: float | None = None  # seconds the receiver asked for (429, 503)


@dataclass(frozen=True)
class Decision:
    """What becomes of an event after an attempt."""

    status: DeliveryStatus
    next_attempt_at: datetime | None
    last_error: str | None


def outcome_of_response(status: int, text: str, *, retry_after: str | None, now: datetime) -> Outcome:
    """2xx is delivered; any other answer is retried (a 4xx is mostly a receiver's setup, which gets fixed).

    Redirects are not followed: a signed body must not travel to an address nobody configured.
    """
    if 200 <= status < 300:
        return Outcome(True)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    error = f"HTTP {status}: {_clip(printable(first), 200)}" if first else f"HTTP {status}"
    if 300 <= status < 400:
        error += " (redirects are not followed: set WEBHOOK_URL to the final address)"
    wait = parse_retry_after(retry_after, now=now) if status in (429, 503) else None
    return Outcome(False, error, wait)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date); ``None`` if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - now).total_seconds(), 0.0) if when.tzinfo else None


def outcome_of_error(exc: Exception, *, timeout: float) -> Outcome:
    """A POST that got no answer: refused, reset, timed out, ... (always retried)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return Outcome(False, f"timed out connecting (after {timeout:g} s)")
    if isinstance(exc, httpx.ReadTimeout):
        return Outcome(False, f"timed out waiting for an answer (after {timeout:g} s)")
    if isinstance(exc, httpx.TimeoutException):
        return Outcome(False, f"timed out sending (after {timeout:g} s)")
    detail = _clip(printable((str(exc).strip().splitlines() or [type(exc).__name__])[0]), 200)
    if isinstance(exc, httpx.ConnectError):
        return Outcome(False, f"could not connect: {detail}")
    if isinstance(exc, httpx.RemoteProtocolError):
        return Outcome(False, f"the receiver broke the connection: {detail}")
    return Outcome(False, f"{type(exc).__name__}: {detail}")


def decide_next(
    outcome: Outcome,
    *,
    attempts: int,
    max_attempts: int,
    now: datetime,
    backoff_base: float,
    backoff_cap: float,
    jitter: float,
) -> Decision:
    """Delivered, due again after a backoff, or failed once ``attempts`` (this one included) reach the max.

    The backoff is ``retry.compute_backoff``; a receiver's Retry-After is honoured up to ``backoff_cap``.
    """
    if outcome.delivered:
        return Decision(DeliveryStatus.DELIVERED, None, None)
    if attempts >= max_attempts:
        return Decision(DeliveryStatus.FAILED, None, outcome.error)
    delay = compute_backoff(backoff_base, attempts, backoff_cap, jitter)
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, backoff_cap))
    return Decision(DeliveryStatus.PENDING, now + timedelta(seconds=delay), outcome.error)


def lease_seconds(settings: Settings) -> float:
    """How long a claimed event is left to its deliverer: connect, send and answer, each within the timeout."""
    return 3 * settings.webhook_timeout_seconds + 30.0


# ---------------------------------------------------------------- the outbox rows


@dataclass(frozen=True)
class Delivery:
    """One claimed attempt at one event; ``attempt`` (1-based) fences the write of its outcome."""

    id: int
    event_id: str
    event: str
    body: str
    attempt: int


def claim_due(session: Session, *, now: datetime, lease_seconds: float, limit: int) -> list[Delivery]:
    """Claim up to ``limit`` due pending events, oldest first; commit at once, before any POST.

    Each claimed row counts the attempt and is due again only after its lease: a deliverer that
    dies mid-POST leaves its events to the next one. Postgres skips rows another deliverer is
    claiming (``SKIP LOCKED``); on SQLite one ``UPDATE`` chooses and claims under its single writer.
    """
    due = (
        WebhookEvent.status == DeliveryStatus.PENDING.value,
        or_(WebhookEvent.next_attempt_at.is_(None), WebhookEvent.next_attempt_at <= now),
    )
    oldest = select(WebhookEvent.id).where(*due).order_by(WebhookEvent.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        # Locked first, in a statement of its own: inside UPDATE ... WHERE id IN (...), Postgres may rescan a
        # SKIP LOCKED subquery per row, skip the rows that statement itself just locked, and claim them all.
        ids = session.scalars(oldest.with_for_update(skip_locked=True)).all()
        if not ids:
            return []
        chosen: ColumnElement[bool] = WebhookEvent.id.in_(ids)
    else:  # SQLite: one statement, so the choice and the claim happen under its single writer lock
        chosen = WebhookEvent.id.in_(oldest)
    claimed = session.execute(
        update(WebhookEvent)
        .where(chosen, *due)
        .values(
            attempts=WebhookEvent.attempts + 1,
            last_attempt_at=now,
            next_attempt_at=now + timedelta(seconds=lease_seconds),
        )
        .returning(WebhookEvent.id, WebhookEvent.event_id, WebhookEvent.event, WebhookEvent.body, WebhookEvent.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((Delivery(*row) for row in claimed), key=lambda d: d.id)


def record_outcome(session: Session, delivery: Delivery, decision: Decision, *, now: datetime) -> bool:
    """Write what the attempt came to; False if the row moved on meanwhile (an operator, or a later claim).

    A delivery counts whoever made it; a failure only for the attempt that still holds the row.
    """
    fence = [WebhookEvent.id == delivery.id, WebhookEvent.status == DeliveryStatus.PENDING.value]
    values: dict[str, Any] = {"status": decision.status.value, "next_attempt_at": decision.next_attempt_at}
    if decision.status is DeliveryStatus.DELIVERED:
        values["delivered_at"] = now
    else:
        fence.append(WebhookEvent.attempts == delivery.attempt)
        values["last_error"] = decision.last_error
    result = session.execute(
        update(WebhookEvent).where(*fence).values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


# ---------------------------------------------------------------- sending


def make_client(settings: Settings, *, concurrency: int = CONCURRENCY) -> httpx.Client:
    """An HTTP client whose connect, write and read each time out after WEBHOOK_TIMEOUT_SECONDS."""
    # httpx logs every request's whole URL at INFO: the path or query of WEBHOOK_URL may be a token.
    httpx_log = logging.getLogger("httpx")
    if httpx_log.getEffectiveLevel() < logging.WARNING:
        httpx_log.setLevel(logging.WARNING)
    return httpx.Client(
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        follow_redirects=False,
    )


def post_event(client: httpx.Client, delivery: Delivery, *, url: str, secret: str, timeout: float) -> Outcome:
    """POST one event, signed now; never raises for anything the receiver or the network does."""
    timestamp = int(time.time())  # the receiver's clock judges it: wall time, not the caller's ``now``
    headers = headers_for(delivery, secret=secret, timestamp=timestamp)
    try:
        with client.stream("POST", url, content=delivery.body.encode(), headers=headers) as response:
            head = b""
            for chunk in response.iter_bytes():  # a short answer only: an error page can be megabytes
                head += chunk
                if len(head) >= _ERROR_BODY_BYTES:
                    break
            text = head[:_ERROR_BODY_BYTES].decode(response.encoding or "utf-8", errors="replace")
            outcome = outcome_of_response(
                response.status_code, text, retry_after=response.headers.get("Retry-After"), now=utcnow()
            )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        outcome = outcome_of_error(exc, timeout=timeout)
    if outcome.error:  # an answer or an error message may quote the address, token and all
        outcome = Outcome(outcome.delivered, scrub_url(outcome.error, url), outcome.retry_after)
    return outcome


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL: all of it that may be logged (the path or query may be a token)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def scrub_url(text: str, url: str) -> str:
    """``text`` with the secret parts of ``url`` (user info, path, query) masked."""
    parts = urlsplit(url)
    pieces = [url, parts.path + ("?" + parts.query if parts.query else ""), parts.query, parts.path]
    for piece in pieces:
        if len(piece) > 1:
            text = text.replace(piece, "***")
    return redact_text(text)


@dataclass
class Counts:
    """What one ``deliver_due`` did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.failed

    def add(self, status: DeliveryStatus) -> None:
        if status is DeliveryStatus.DELIVERED:
            self.delivered += 1
        elif status is DeliveryStatus.FAILED:
            self.failed += 1
        else:
            self.retrying += 1


def deliver_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    concurrency: int = CONCURRENCY,
    stop: threading.Event | None = None,
    jitter: Callable[[], float] = random.random,
) -> Counts:
    """POST every due event, ``concurrency`` at a time, oldest first; stop early when a whole batch fails.

    ``now`` fixes the clock (tests); by default each batch reads it. A batch in which nothing is
    delivered ends the round: the receiver looks down, and the rest wait for their next turn.
    """
    counts = Counts()
    own_client = client is None
    http = client or make_client(settings, concurrency=concurrency)
    url, secret = settings.webhook_url.get_secret_value(), settings.webhook_secret.get_secret_value()
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook-post") as pool:
            while stop is None or not stop.is_set():
                with transaction(sessions) as session:
                    batch = claim_due(
                        session, now=now or utcnow(), lease_seconds=lease_seconds(settings), limit=concurrency
                    )
                if not batch:
                    break
                outcomes = list(
                    pool.map(
                        lambda d: post_event(http, d, url=url, secret=secret, timeout=settings.webhook_timeout_seconds),
                        batch,
                    )
                )
                delivered = _record_batch(sessions, settings, batch, outcomes, now=now or utcnow(), jitter=jitter)
                for status in delivered:
                    counts.add(status)
                if DeliveryStatus.DELIVERED not in delivered:
                    break
    finally:
        if own_client:
            http.close()
    return counts


def _record_batch(
    sessions: sessionmaker[Session],
    settings: Settings,
    batch: Sequence[Delivery],
    outcomes: Sequence[Outcome],
    *,
    now: datetime,
    jitter: Callable[[], float],
) -> list[DeliveryStatus]:
    recorded: list[DeliveryStatus] = []
    with transaction(sessions) as session:
        for delivery, outcome in zip(batch, outcomes, strict=True):
            decision = decide_next(
                outcome,
                attempts=delivery.attempt,
                max_attempts=settings.webhook_max_attempts,
                now=now,
                backoff_base=settings.webhook_backoff_seconds,
                backoff_cap=settings.webhook_backoff_max_seconds,
                jitter=jitter(),
            )
            if record_outcome(session, delivery, decision, now=now):
                recorded.append(decision.status)
                _log_decision(delivery, decision, settings.webhook_max_attempts)
    return recorded


def _log_decision(delivery: Delivery, decision: Decision, max_attempts: int) -> None:
    what = f"{delivery.event} {delivery.event_id} (attempt {delivery.attempt} of {max_attempts})"
    if decision.status is DeliveryStatus.DELIVERED:
        log.info("webhook delivered: %s", what)
    elif decision.status is DeliveryStatus.FAILED:
        log.error("webhook failed for good: %s: %s; `transcriber webhooks retry` sends it again", what,
                  decision.last_error)  # fmt: skip
    else:
        when = decision.next_attempt_at.isoformat(timespec="seconds") if decision.next_attempt_at else "now"
        log.warning("webhook not delivered: %s: %s; next try at %s", what, decision.last_error, when)


# ---------------------------------------------------------------- the loop


def run_delivery_loop(
    sessions: sessionmaker[Session],
    settings: Settings,
    stop: threading.Event,
    *,
    poll_seconds: float = 1.0,
    concurrency: int = CONCURRENCY,
) -> None:
    """Deliver due events until ``stop`` is set, looking about every ``poll_seconds``.

    Outlives any one round: a database or other error is logged and the loop waits longer (up to 30 s).
    """
    log.info("delivering webhooks to %s", origin_of(settings.webhook_url.get_secret_value()))
    errors = 0
    pruned_at: datetime | None = None
    with make_client(settings, concurrency=concurrency) as client:
        while not stop.is_set():
            try:
                deliver_due(sessions, settings, client=client, concurrency=concurrency, stop=stop)
                if settings.webhook_keep_days and (pruned_at is None or utcnow() - pruned_at > PRUNE_EVERY):
                    with transaction(sessions) as session:
                        prune_delivered(session, now=utcnow(), keep_days=settings.webhook_keep_days)
                    pruned_at = utcnow()
                errors = 0
            except Exception as exc:  # the thread must not die: the outbox would fill unseen
                errors += 1
                log.error("webhook delivery round failed (%s: %s); trying again", type(exc).__name__,
                          describe_error(exc))  # fmt: skip
            stop.wait(min(poll_seconds * 2**errors, 30.0))
    log.info("webhook delivery stopped")


def prune_delivered(session: Session, *, now: datetime, keep_days: int) -> int:
    """Delete events delivered more than ``keep_days`` ago (WEBHOOK_KEEP_DAYS); pending and failed ones stay."""
    gone = session.execute(
        delete(WebhookEvent).where(
            WebhookEvent.status == DeliveryStatus.DELIVERED.value,
            WebhookEvent.delivered_at < now - timedelta(days=keep_days),
        )
    ).rowcount  # type: ignore[attr-defined]
    if gone:
        log.info("deleted %d webhook event(s) delivered more than %d days ago", gone, keep_days)
    return int(gone or 0)


def start_delivery_thread(sessions: sessionmaker[Session], settings: Settings) -> threading.Event:
    """Run ``run_delivery_loop`` in a daemon thread (beat's); set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run_delivery_loop, args=(sessions, settings, stop), name="webhook-delivery", daemon=True
    )
    thread.start()
    return stop


# ---------------------------------------------------------------- operators


def list_events(
    session: Session, *, status: DeliveryStatus | str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The latest events (of one status), newest first, as plain values for the CLI and ``--json``."""
    query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookEvent.status == DeliveryStatus(status).value)
    return [
        {
            "event_id": e.event_id,
            "event": e.event,
            "recording_id": str(e.recording_id) if e.recording_id else None,
            "status": e.status,
            "attempts": e.attempts,
            "created_at": e.created_at,
            "last_attempt_at": e.last_attempt_at,
            "next_attempt_at": e.next_attempt_at if e.status == DeliveryStatus.PENDING.value else None,
            "delivered_at": e.delivered_at,
            "last_error": e.last_error,
        }
        for e in session.scalars(query)
    ]


def summary(session: Session, *, now: datetime) -> dict[str, Any]:
    """Events by status, the age of the oldest pending one, and the latest error not yet made good."""
    by_status = dict(session.execute(select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)).all())
    oldest = session.scalar(
        select(func.min(WebhookEvent.created_at)).where(WebhookEvent.status == DeliveryStatus.PENDING.value)
    )
    last = session.execute(
        select(WebhookEvent.event_id, WebhookEvent.event, WebhookEvent.last_error, WebhookEvent.last_attempt_at)
        .where(WebhookEvent.status != DeliveryStatus.DELIVERED.value, WebhookEvent.last_error.is_not(None))
        .order_by(WebhookEvent.last_attempt_at.desc(), WebhookEvent.id.desc())
        .limit(1)
    ).first()
    return {
        **{status.value: int(by_status.get(status.value, 0)) for status in DeliveryStatus},
        "oldest_pending_age_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
        "last_error": (
            {"event_id": last.event_id, "event": last.event, "error": last.last_error, "at": last.last_attempt_at}
            if last
            else None
        ),
    }


def retry_events(session: Session, *, now: datetime, event_ids: Sequence[str] = ()) -> list[str]:
    """Make events pending and due now, with their attempts counted afresh; returns their ids.

    No ids: every failed event. Ids (whole, or a unique first part): those events whatever their
    status, so a delivered one is sent again (a receiver that lost it).
    """
    where: ColumnElement[bool] = WebhookEvent.status == DeliveryStatus.FAILED.value
    if event_ids:
        where = WebhookEvent.event_id.in_([_find_event_id(session, ref) for ref in event_ids])
    return list(
        session.scalars(
            update(WebhookEvent)
            .where(where)
            .values(status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=now, delivered_at=None)
            .returning(WebhookEvent.event_id)
            .execution_options(synchronize_session=False)
        )
    )


def _find_event_id(session: Session, ref: str) -> str:
    ref = ref.strip().lower()
    found = session.scalars(select(WebhookEvent.event_id).where(WebhookEvent.event_id.like(f"{ref}%")).limit(2)).all()
    if not ref or not found:
        raise TranscriberError(f"no webhook event {ref!r}: `transcriber webhooks` lists them")
    if len(found) > 1:
        raise TranscriberError(f"more than one webhook event matches {ref!r}: give more of its id")
    return found[0]


def format_summary(data: dict[str, Any]) -> str:
    """``summary`` as a few lines for the terminal."""
    lines = ["webhooks    " + "  ".join(f"{status.value} {data[status.value]}" for status in DeliveryStatus)]
    if data["oldest_pending_age_seconds"] is not None:
        lines.append(f"            oldest pending {_age(data['oldest_pending_age_seconds'])} old")
    if data["failed"]:
        lines.append("            failed ones: transcriber webhooks retry --failed")
    last = data["last_error"]
    if last:
        at = last["at"].strftime("%Y-%m-%d %H:%M:%S") if last["at"] else "-"
        lines.append(f"last error  {last['event_id'][:8]}  {last['event']}  {at}")
        lines.append(f"            {_clip(last['error'], 68)}")
    return "\n".join(lines)


def format_events(rows: list[dict[str, Any]]) -> str:
    """``list_events`` as a table that fits 80 columns, the last error under its event."""
    if not rows:
        return "no webhook events"
    lines = [f"{'event id':<10}{'event':<24}{'status':<11}{'tries':>5}  next try or done (UTC)"]
    for r in rows:
        when = r["delivered_at"] or r["next_attempt_at"] or r["last_attempt_at"] or r["created_at"]
        shown = when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"
        lines.append(f"{r['event_id'][:8]:<10}{r['event']:<24}{r['status']:<11}{r['attempts']:>5}  {shown}")
        if r["last_error"] and r["status"] != DeliveryStatus.DELIVERED.value:
            lines.append(f"          {_clip(r['last_error'], 70)}")
    return "\n".join(lines)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
