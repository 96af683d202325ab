"""What an exception that ends an attempt is recorded as (worker.as_attempt_error): a pure table."""

from __future__ import annotations

import errno

import pytest
from sqlalchemy.exc import DataError, OperationalError

from transcriber.errors import AttemptTimeout, PermanentError, RetryableError
from transcriber.worker import as_attempt_error


class _Driver(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (AttemptTimeout(60), RetryableError, "Timeout exceeded: TimeLimitExceeded(60)"),
        (PermanentError("Empty file: x"), PermanentError, "Empty file: x"),
        (OSError(errno.ENAMETOOLONG, "File name too long", "/out/" + "a" * 300), PermanentError,
         "File name too long for this file system: /out/" + "a" * 300),
        (OSError(errno.EIO, "Input/output error"), RetryableError, "I/O error: [Errno 5] Input/output error"),
        (OperationalError("SELECT 1", {}, _Driver("server closed the connection\nunexpectedly")), RetryableError,
         "Database error: server closed the connection"),
        (DataError("INSERT", {}, _Driver("value too long for type character varying(64)\n")), RetryableError,
         "DataError: value too long for type character varying(64)"),
        (ValueError("bad\nsecond line"), RetryableError, "ValueError: bad"),
        (KeyError("speaker"), RetryableError, "KeyError: 'speaker'"),
        (RuntimeError(), RetryableError, "RuntimeError"),
        (ValueError("postgresql://u:secret@db/x refused"), RetryableError,
         "ValueError: postgresql://u:***@db/x refused"),
    ],
)  # fmt: skip
def test_as_attempt_error(exc: BaseException, kind: type, message: str) -> None:
    error = as_attempt_error(exc)
    assert type(error) is kind or isinstance(error, kind)
    assert str(error) == message
