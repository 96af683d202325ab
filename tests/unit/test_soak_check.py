"""The soak's verdict (bench/soak.py ``check``) fails every run that lost, failed or repeated something."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak import check  # noqa: E402

T0 = datetime(2026, 1, 1, 12, 0, 0)
EXPECTED = {"call 0000.m4a": "elephant|zoo", "call 0001.m4a": "invoice|accounts"}


def recording(n: int, status: str = "completed", transcript: str | None = None, error: str | None = None):  # type: ignore[no-untyped-def]
    text = transcript if transcript is not None else ["The elephant at the zoo.", "I sent the invoice."][n]
    return SimpleNamespace(id=n, file_name=f"call {n:04d}.m4a", status=status, error_message=error, transcript=text)


def attempt(n: int, number: int, outcome: str, start: int, end: int | None):  # type: ignore[no-untyped-def]
    finished = T0 + timedelta(seconds=end) if end is not None else None
    return SimpleNamespace(
        recording_id=n, attempt=number, outcome=outcome, started_at=T0 + timedelta(seconds=start), finished_at=finished
    )


GOOD_ATTEMPTS = [attempt(0, 1, "lost", 0, 5), attempt(0, 2, "succeeded", 6, 8), attempt(1, 1, "succeeded", 0, 2)]


def test_a_clean_run_has_no_problems() -> None:
    assert check([recording(0), recording(1)], GOOD_ATTEMPTS, EXPECTED) == []


@pytest.mark.parametrize(
    ("case", "rows", "attempts", "problem"),
    [
        ("a failed recording, whatever its cause", [recording(0), recording(1, "failed", error="Max retries")],
         GOOD_ATTEMPTS[:2] + [attempt(1, 1, "failed", 0, 2)], "call 0001.m4a: ended failed: Max retries"),
        ("still queued", [recording(0), recording(1, "queued")], GOOD_ATTEMPTS[:2], "call 0001.m4a: ended queued"),
        ("a file lost", [recording(0)], GOOD_ATTEMPTS[:2], "1 recordings for 2 files"),
        ("its keyword missing", [recording(0), recording(1, transcript="Hello.")], GOOD_ATTEMPTS,
         "call 0001.m4a: transcript 'Hello.': invoice|accounts x0"),
        ("its keyword twice (a seam repeated)", [recording(0), recording(1, transcript="Invoice. Invoice.")],
         GOOD_ATTEMPTS, "invoice|accounts x2"),
        ("completed without a succeeded attempt", [recording(0), recording(1)], GOOD_ATTEMPTS[:2],
         "call 0001.m4a: 0 attempts succeeded"),
        ("succeeded twice", [recording(0), recording(1)], [*GOOD_ATTEMPTS, attempt(1, 2, "succeeded", 3, 4)],
         "call 0001.m4a: 2 attempts succeeded"),
        ("two attempts at once", [recording(0), recording(1)],
         [attempt(0, 1, "lost", 0, 5), attempt(0, 2, "succeeded", 4, 8), GOOD_ATTEMPTS[2]],
         "call 0000.m4a: attempts 1 and 2 overlap"),
    ],
)  # fmt: skip
def test_what_fails_the_soak(case: str, rows: list, attempts: list, problem: str) -> None:
    problems = check(rows, attempts, EXPECTED)
    assert any(problem in p for p in problems), (case, problems)
