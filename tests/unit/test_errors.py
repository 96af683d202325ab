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


@pytest.mark.parametrize(
    ("outcome", "message", "cause"),
    [
        ("timeout", "Timeout exceeded: TimeLimitExceeded(1800)", "timeout"),
        ("failed", "Max retries exceeded (3): Timeout exceeded: TimeLimitExceeded(1800)", "timeout"),
        ("lost", "Worker lost: no heartbeat for 400s", "worker_lost"),
        ("failed", "Max retries exceeded (3): Worker lost: no heartbeat for 400s", "worker_lost"),
        ("lost", "Interrupted: the worker shut down; the next attempt resumes where this one stopped", "interrupted"),
        ("lost", "Lease lost: the recording was set to queued while this attempt ran", "lease_lost"),
        ("failed", "Unreadable audio: Invalid data found when processing input", "unreadable"),
        ("failed", "Empty file: /in/a.m4a has 0 bytes", "unreadable"),
        ("failed", "Incomplete decode: got 1.0 of 60.0 min (the file is truncated)", "unreadable"),
        ("failed", "File not found: /in/a.m4a (moved or deleted after it was queued)", "missing"),
        ("failed", "I/O error reading /in/a.m4a: [Errno 5] Input/output error", "io"),
        ("failed", "File in use: C:\\in\\a.m4a is locked by another program", "io"),
        ("failed", "Database error: server closed the connection unexpectedly", "database"),
        ("failed", "Permission denied: /in/a.m4a: give the worker's account read access", "refused"),
        ("lost", "Reset by an operator while this attempt ran", "operator"),
        ("lost", "Skipped by an operator while this attempt ran", "operator"),
        ("lost", "Superseded: the recording was queued again while this attempt ran; attempt 2 took it", "operator"),
        ("failed", "RuntimeError: something new", "other"),
        ("lost", "something new", "worker_lost"),
        ("failed", None, "other"),
        ("succeeded", None, None),
        ("running", None, None),
    ],
)
def test_every_failure_has_a_class(outcome: str, message: str | None, cause: str | None) -> None:
    from transcriber.errors import CAUSES, cause_of

    assert cause_of(outcome, message) == cause
    assert cause is None or cause in CAUSES
