"""Retry decisions, backoff, time limits and the broker's visibility timeout: pure tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from transcriber.errors import AttemptTimeout
from transcriber.retry import compute_backoff, decide_after_error, effective_time_limit, visibility_timeout_for
from transcriber.tables import RecordingStatus

NOW = datetime(2024, 3, 1, 17, 11, 19, tzinfo=UTC)
TIMEOUT_CAUSE = str(AttemptTimeout(1800))


@pytest.mark.parametrize(
    ("base", "retries_done", "cap", "jitter", "expected"),
    [
        (30, 1, 3600, 0.0, 15.0),  # first retry: ceiling 30, lower edge of the upper half
        (30, 1, 3600, 0.5, 22.5),
        (30, 2, 3600, 0.0, 30.0),  # ceiling doubles: 60
        (30, 3, 3600, 0.0, 60.0),  # 120
        (30, 3, 3600, 0.5, 90.0),
        (30, 7, 3600, 0.0, 960.0),  # 1920, still under the cap
        (30, 8, 3600, 0.0, 1800.0),  # 3840 capped to 3600
        (30, 8, 3600, 0.5, 2700.0),
        (30, 10_000, 3600, 0.0, 1800.0),  # huge retry numbers neither overflow nor pass the cap
        (30, 0, 3600, 0.0, 15.0),  # retries_done below 1 is treated as the first retry
        (0, 1, 3600, 0.0, 0.0),  # base 0: no waiting at all
        (0, 5, 3600, 0.9, 0.0),
        (-5, 3, 3600, 0.5, 0.0),
    ],
)
def test_compute_backoff(base: float, retries_done: int, cap: float, jitter: float, expected: float) -> None:
    assert compute_backoff(base, retries_done, cap, jitter) == pytest.approx(expected)


@pytest.mark.parametrize("retries_done", [1, 2, 3, 6, 7, 8, 50])
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.75, 0.999999])
def test_backoff_stays_in_upper_half_of_capped_ceiling(retries_done: int, jitter: float) -> None:
    ceiling = min(3600.0, 30.0 * 2 ** (retries_done - 1))
    delay = compute_backoff(30, retries_done, 3600, jitter)
    assert ceiling / 2 <= delay < ceiling


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.99])
def test_backoff_never_shrinks_as_retries_grow(jitter: float) -> None:
    delays = [compute_backoff(30, n, 3600, jitter) for n in range(1, 15)]
    assert delays == sorted(delays)


@pytest.mark.parametrize(
    ("retryable", "retry_count", "max_retries", "status", "new_count", "message", "delay"),
    [
        # Permanent: failed at once, count untouched, the bare cause (even with retries left).
        (False, 0, 3, RecordingStatus.FAILED, 0, TIMEOUT_CAUSE, None),
        (False, 2, 3, RecordingStatus.FAILED, 2, TIMEOUT_CAUSE, None),
        (False, 3, 3, RecordingStatus.FAILED, 3, TIMEOUT_CAUSE, None),
        # Retryable with retries left: queued again, one more retry counted, not before now + backoff.
        (True, 0, 3, RecordingStatus.QUEUED, 1, TIMEOUT_CAUSE, 15.0),
        (True, 1, 3, RecordingStatus.QUEUED, 2, TIMEOUT_CAUSE, 30.0),
        (True, 2, 3, RecordingStatus.QUEUED, 3, TIMEOUT_CAUSE, 60.0),
        # Retries spent: failed, keeping the root cause behind the count.
        (True, 3, 3, RecordingStatus.FAILED, 3,
         "Max retries exceeded (3): Timeout exceeded: TimeLimitExceeded(1800)", None),
        (True, 0, 0, RecordingStatus.FAILED, 0,
         "Max retries exceeded (0): Timeout exceeded: TimeLimitExceeded(1800)", None),
    ],
)  # fmt: skip
def test_decide_after_error(
    retryable: bool,
    retry_count: int,
    max_retries: int,
    status: RecordingStatus,
    new_count: int,
    message: str,
    delay: float | None,
) -> None:
    decision = decide_after_error(
        cause=TIMEOUT_CAUSE,
        retryable=retryable,
        retry_count=retry_count,
        max_retries=max_retries,
        now=NOW,
        backoff_base=30,
        backoff_cap=3600,
        jitter=0.0,
    )
    assert decision.status is status
    assert decision.retry_count == new_count
    assert decision.error_message == message
    assert decision.not_before == (None if delay is None else NOW + timedelta(seconds=delay))


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_decide_after_error_backs_off_within_the_upper_half(jitter: float) -> None:
    decision = decide_after_error(
        cause="Worker lost", retryable=True, retry_count=0, max_retries=3, now=NOW, backoff_base=30, backoff_cap=3600,
        jitter=jitter,
    )  # fmt: skip
    assert decision.not_before is not None
    assert NOW + timedelta(seconds=15) <= decision.not_before < NOW + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("timeout", "factor", "duration", "expected"),
    [
        (0, 2.0, 3600.0, None),  # 0 = no limit, whatever the recording's length
        (-1, 2.0, 3600.0, None),
        (7200, 0.0, 5400.0, 7200.0),  # factor off
        (7200, 2.0, 5400.0, 10800.0),  # a long call gets more than the fixed limit
        (7200, 2.0, 60.0, 7200.0),  # a short call keeps the fixed limit
        (7200, 2.0, None, 7200.0),  # duration unknown
        (7200, 2.0, 0.0, 7200.0),
        (1800, 1.5, 1800.0, 2700.0),
        (1800, 1.0, 1800.0, 1800.0),
    ],
)
def test_effective_time_limit(timeout: float, factor: float, duration: float | None, expected: float | None) -> None:
    limit = effective_time_limit(timeout, factor, duration)
    assert limit == expected
    assert limit is None or isinstance(limit, float)


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (0, 7 * 24 * 3600),  # no time limit: a week
        (-1, 7 * 24 * 3600),
        (60, 12 * 3600),  # the 12 h floor
        (1800, 12 * 3600),
        (7200, 12 * 3600),
        (36000, 2 * 36000 + 3600),
        (100_000, 2 * 100_000 + 3600),
    ],
)
def test_visibility_timeout_for(timeout: float, expected: int) -> None:
    assert visibility_timeout_for(timeout) == expected


@pytest.mark.parametrize("timeout", [1, 1800, 7200, 43200, 86400, 10 * 86400, 1234.5])
def test_visibility_timeout_is_well_above_the_attempt_limit(timeout: float) -> None:
    visibility = visibility_timeout_for(timeout)
    assert isinstance(visibility, int)
    assert visibility >= 2 * timeout + 3600


def test_an_explicit_visibility_timeout_wins_and_sweeps_often() -> None:
    from transcriber.celery_app import celery_config
    from transcriber.settings import Settings

    derived = celery_config(Settings(celery_broker_url="redis://h:6379/0", task_timeout_seconds=3600))
    assert derived["visibility_timeout"] == 12 * 3600
    assert "unacked_restore_throttle" not in derived["broker_transport_options"]
    chosen = celery_config(Settings(celery_broker_url="redis://h:6379/0", broker_visibility_timeout_seconds=2))
    assert chosen["broker_transport_options"] == {
        "visibility_timeout": 2,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    assert chosen["visibility_timeout"] == 2
