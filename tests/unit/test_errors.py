"""Error messages people read in ``transcriber failed`` and the class that carries the retry decision."""

from __future__ import annotations

import pytest

from transcriber.errors import AttemptTimeout, PermanentError, RetryableError, TranscriberError, WorkerLost


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (1800, "Timeout exceeded: TimeLimitExceeded(1800)"),
        (1800.0, "Timeout exceeded: TimeLimitExceeded(1800)"),  # a float limit reads like the int one
        (7200, "Timeout exceeded: TimeLimitExceeded(7200)"),
        (2.5, "Timeout exceeded: TimeLimitExceeded(2.5)"),
        (0.25, "Timeout exceeded: TimeLimitExceeded(0.25)"),
        (10800.0, "Timeout exceeded: TimeLimitExceeded(10800)"),
    ],
)
def test_attempt_timeout_message(seconds: float, message: str) -> None:
    error = AttemptTimeout(seconds)
    assert str(error) == message
    assert error.seconds == seconds


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (AttemptTimeout(1800), True),
        (WorkerLost("worker died"), True),
        (PermanentError("File not found: x.m4a"), False),
    ],
)
def test_the_class_carries_the_retry_decision(error: TranscriberError, retryable: bool) -> None:
    assert isinstance(error, TranscriberError)
    assert isinstance(error, RetryableError) is retryable
    assert isinstance(error, PermanentError) is not retryable
