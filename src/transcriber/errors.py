"""One error hierarchy; the class carries the retry decision.

A ``PermanentError`` means the input can never succeed (missing file, not audio):
the recording fails on the first attempt.  A ``RetryableError`` means this attempt
failed for a reason that may pass (time limit, lost worker, transient I/O).
"""

from __future__ import annotations


class TranscriberError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(TranscriberError):
    """A setting is invalid; the message is one line naming the variable."""


class PermanentError(TranscriberError):
    """The recording can never succeed as it is; do not retry."""


class RetryableError(TranscriberError):
    """This attempt failed; another attempt may succeed."""


class AttemptTimeout(RetryableError):
    """The attempt ran past its time limit and its model process was killed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"Timeout exceeded: TimeLimitExceeded({_fmt_seconds(seconds)})")


class WorkerLost(RetryableError):
    """The process doing the work died or stopped answering."""


class Interrupted(TranscriberError):
    """The worker is shutting down; the attempt hands its recording back untouched."""


class LeaseLost(TranscriberError):
    """The recording was rescued and handed to another attempt; stop quietly."""


class ModelNotFound(TranscriberError):
    """The configured Whisper model cannot be found or loaded offline."""


def _fmt_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}".rstrip("0").rstrip(".")


# The class of a failure, for metrics (``transcriber_failures_total{cause}``) and ``attempts.cause``. Read from
# the attempt's outcome and the first words of its message, which every raise site above and in audio.py,
# runner.py and worker.py keeps stable: a new message that fits none of them counts as ``other``.
FAILURE_CAUSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("timeout", ("Timeout exceeded",)),
    ("worker_lost", ("Worker lost", "model process")),
    ("interrupted", ("Worker stopping", "worker stopping", "Interrupted")),
    ("lease_lost", ("Lease lost",)),
    ("operator", ("Reset by an operator", "Skipped by an operator", "Superseded")),
    ("missing", ("File not found",)),
    ("unreadable", ("Unreadable audio", "Empty file", "Incomplete decode", "Not audio", "not audio")),
    ("changed", ("File changed",)),
    ("refused", ("Refused", "Permission denied")),
    ("io", ("I/O error", "File in use", "File name too long")),
    ("database", ("Database error",)),
)
CAUSES = (*(name for name, _ in FAILURE_CAUSES), "other")


def cause_of(outcome: str, message: str | None) -> str | None:
    """``timeout``, ``worker_lost``, ``unreadable``, ``io``, ... for a failed attempt; None for a success.

    ``message`` may carry the retry wrapper (``Max retries exceeded (3): <cause>``): the cause inside counts.
    """
    if outcome in ("succeeded", "running"):
        return None
    text = (message or "").strip()
    if text.startswith("Max retries exceeded") and ": " in text:
        text = text.split(": ", 1)[1]
    for name, prefixes in FAILURE_CAUSES:
        if text.startswith(prefixes):
            return name
    if outcome == "timeout":
        return "timeout"
    if outcome == "lost":
        return "worker_lost"
    return "other"
