"""Passwords in URLs never reach logs, errors or CLI output."""

from __future__ import annotations

import pytest

from transcriber.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg2://u:secret@h/db", "postgresql+psycopg2://u:***@h/db"),
        ("postgresql+psycopg2://u:secret@h:5432/db?sslmode=require", "postgresql+psycopg2://u:***@h:5432/db?sslmode=require"),
        ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
        ("amqp://guest:guest@rabbit//", "amqp://guest:***@rabbit//"),
    ],
)  # fmt: skip
def test_password_is_masked(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "secret" not in redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://h:6379/0",
        "postgresql+psycopg2://u@h/db",
        "postgresql://h:5432/db",
        "sqlite:////var/lib/transcriber/transcriber.db",
        "filesystem://",
        "",
    ],
)
def test_url_without_password_is_unchanged(url: str) -> None:
    assert redact_url(url) == url


def test_every_url_in_free_text_is_masked() -> None:
    text = "cannot reach postgresql://app:pw1@db/t nor redis://:pw2@cache:6379/0 (retrying)"
    assert redact_text(text) == "cannot reach postgresql://app:***@db/t nor redis://:***@cache:6379/0 (retrying)"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app@db/t?password=s3cret", "postgresql://app@db/t?password=***"),
        ("postgresql://app@db/t?sslmode=require&password=s3cret", "postgresql://app@db/t?sslmode=require&password=***"),
        ("postgresql://app@db/t?password=s3cret&sslmode=require", "postgresql://app@db/t?password=***&sslmode=require"),
        ("postgresql://app@db/t?PASSWORD=s3cret", "postgresql://app@db/t?PASSWORD=***"),
        ("postgresql://app@db/t?sslpassword=s3cret", "postgresql://app@db/t?sslpassword=***"),
        ("rediss://h:6380/0?password=s3cret#x", "rediss://h:6380/0?password=***#x"),
        ("sqs://h/?aws_secret_access_key=s3cret&region=eu", "sqs://h/?aws_secret_access_key=***&region=eu"),
        ("https://h/?token=s3cret", "https://h/?token=***"),
        ("postgresql://u:pw@h/db?password=s3cret", "postgresql://u:***@h/db?password=***"),
    ],
)  # fmt: skip
def test_secret_in_the_query_string_is_masked(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?sslmode=require&application_name=transcriber",
        "postgresql://h/db?sslkey=/etc/ssl/client.key",  # a path to a key is not the key
        "postgresql://h/db?password=",
    ],
)
def test_query_string_without_secrets_is_unchanged(url: str) -> None:
    assert redact_url(url) == url


def test_query_string_secret_in_free_text_is_masked() -> None:
    text = "connection to server failed: FATAL: password authentication failed (URL postgresql://h/db?password=pw1 )"
    assert "pw1" not in redact_text(text)
