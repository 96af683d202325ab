"""Pure decisions about attempts: what to do after an error, backoff, time limit.

No I/O and no randomness here: each function takes ``now``, the jitter, the settings'
numbers and the facts, and returns a value. The lifecycle module applies them to the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from transcriber.tables import RecordingStatus


@dataclass(frozen=True)
class RetryDecision:
    """What becomes of a recording whose attempt just failed."""

    status: RecordingStatus
    retry_count: int
    error_message: str
    not_before: datetime | None


def compute_backoff(base: float, retries_done: int, cap: float, jitter: float) -> float:
    """Seconds to wait before retry number ``retries_done`` (1-based).

    Exponential (``base * 2**(n-1)``) capped at ``cap``, with "equal jitter": a
    random point in the upper half, so retries of a batch that failed together
    (Redis restart, DB outage) do not come back together. ``jitter`` is in [0, 1).
    """
    if base <= 0:
        return 0.0
    exponent = max(retries_done - 1, 0)
    ceiling = min(cap, base * (2 ** min(exponent, 32))) if cap > 0 else base * (2 ** min(exponent, 32))
    return ceiling / 2 + ceiling / 2 * jitter


def decide_after_error(
    *,
    cause: str,
    retryable: bool,
    retry_count: int,
    max_retries: int,
    now: datetime,
    backoff_base: float,
    backoff_cap: float,
    jitter: float,
) -> RetryDecision:
    """Requeue with backoff while retries remain, else fail keeping the root cause.

    ``jitter`` in [0, 1) spreads retries that failed together; the caller draws it.
    """
    if not retryable:
        return RetryDecision(RecordingStatus.FAILED, retry_count, cause, None)
    if retry_count >= max_retries:
        message = f"Max retries exceeded ({max_retries}): {cause}"
        return RetryDecision(RecordingStatus.FAILED, retry_count, message, None)
    retries_done = retry_count + 1
    delay = compute_backoff(backoff_base, retries_done, backoff_cap, jitter)
    return RetryDecision(RecordingStatus.QUEUED, retries_done, cause, now + timedelta(seconds=delay))


def effective_time_limit(timeout_seconds: float, realtime_factor: float, duration: float | None) -> float | None:
    """The time limit of one attempt in seconds, or ``None`` for no limit.

    ``max(TASK_TIMEOUT_SECONDS, factor x duration)``: one setting fits 2-minute and
    90-minute calls. ``TASK_TIMEOUT_SECONDS=0`` means no limit at all.
    """
    if timeout_seconds <= 0:
        return None
    scaled = realtime_factor * duration if realtime_factor > 0 and duration else 0.0
    return float(max(timeout_seconds, scaled))


def visibility_timeout_for(timeout_seconds: float, realtime_factor: float = 0.0) -> int:
    """Kombu's Redis visibility timeout: well above the longest attempt.

    Past it Redis redelivers an unacknowledged message, which would start a second
    transcription of a long call; the compare-and-set claim remains the second guard.
    With a real-time factor limits grow with the file, so no upper bound is known.
    """
    floor = 12 * 3600
    if timeout_seconds <= 0 or realtime_factor > 0:
        return 7 * 24 * 3600
    return int(max(floor, 2 * timeout_seconds + 3600))
