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
