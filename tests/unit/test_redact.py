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
