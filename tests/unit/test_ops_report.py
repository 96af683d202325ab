"""The operator views print file names in full (the date and time at their end tell calls apart), in 80 columns."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from transcriber import report
from transcriber.errors import TranscriberError

WHEN = datetime(2026, 3, 1, 17, 11, tzinfo=UTC)
NAMES = [
    "a.m4a",
    "Call recording +18134353769_200301_171119.m4a",  # what the phones write: 45 characters
    "Call recording Dr. Müller-Lüdenscheidt (Praxis) +4930123456789_260301_171119.m4a",
    "Call recording " + "x" * 220 + "_200301_171119.m4a",  # 253 characters
    "two  spaces  kept.m4a",
]


def name_in(output: str, name: str) -> bool:
    """``name`` appears whole: on one line, or cut into the 70-column pieces of its own lines."""
    if name in output:
        return True
    pieces = [name[i : i + 70] for i in range(0, len(name), 70)]
    lines = output.splitlines()
    return any([line[10:] for line in lines[start : start + len(pieces)]] == pieces for start in range(len(lines)))


def failed_row(name: str) -> dict[str, object]:
    return {"id": "3f2a9c1d-0000", "file_name": name, "duration_minutes": 61.7, "retry_count": 3,
            "error_message": "Max retries exceeded (3): Timeout exceeded: TimeLimitExceeded(1800)",
            "updated_at": WHEN}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_failed_prints_the_whole_name_in_80_columns(name: str) -> None:
    out = report.format_failed([failed_row(name)])
    assert name_in(out, name)
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "TimeLimitExceeded(1800)" in out


def test_a_name_that_fits_stays_on_its_row() -> None:
    out = report.format_failed([failed_row(NAMES[1])])
    assert out.splitlines()[0] == "3f2a9c1d  Call recording +18134353769_200301_171119.m4a"
    listed = report.format_list(
        [{"id": "3f2a9c1d", "status": "failed", "file_name": "a.m4a", "duration_seconds": 61.0, "created_at": WHEN}]
    )
    assert listed.splitlines()[1] == "3f2a9c1d  failed        1m01s  2026-03-01 17:11  a.m4a"


@pytest.mark.parametrize("name", NAMES)
def test_list_processing_detail_and_review_print_the_whole_name(name: str) -> None:
    listed = report.format_list(
        [{"id": "3f2a9c1d", "status": "completed", "file_name": name, "duration_seconds": 3700.0, "created_at": WHEN}]
    )
    summary = report.format_summary(
        {
            "recordings": {"queued": 0, "processing": 1},
            "attempts": {"running": 1, "succeeded": 0},
            "processing": [
                {
                    "id": "3f2a9c1d",
                    "file_name": name,
                    "worker": "celery@host:1",
                    "percent": 40.0,
                    "done_seconds": 1.0,
                    "estimated_finish": WHEN,
                    "heartbeat_age_seconds": 2.0,
                }  # fmt: skip
            ],
        }
    )
    detail = report.format_detail(
        {
            "id": "3f2a9c1d",
            "status": "failed",
            "file_path": f"/srv/calls/2026/{name}",
            "duration_seconds": 3700.0,
            "progress_seconds": None,
            "percent": None,
            "retry_count": 0,
            "language": None,
            "error_message": None,
            "attempts": [],
        }  # fmt: skip
    )
    review = report.format_needs_review(
        [{"id": "3f2a9c1d", "file_name": name, "duration_seconds": 60.0, "reasons": "low confidence"}]
    )
    for out in (listed, summary, review):
        assert name_in(out, name), out
        assert all(len(line) <= 80 for line in out.splitlines())
    assert name_in(detail, f"/srv/calls/2026/{name}") and all(len(line) <= 80 for line in detail.splitlines())


@pytest.mark.parametrize(
    ("text", "end_of_day", "expected"),
    [
        ("2026-03-01", False, datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01", True, datetime(2026, 3, 2, tzinfo=UTC)),  # --until a day includes that day
        ("2026-03-01 17:11", True, datetime(2026, 3, 1, 17, 11, tzinfo=UTC)),
        ("2026-03-01T17:11:19", False, datetime(2026, 3, 1, 17, 11, 19, tzinfo=UTC)),
        ("2026-03-01T19:11+02:00", False, datetime(2026, 3, 1, 17, 11, tzinfo=UTC)),
    ],
)
def test_since_and_until(text: str, end_of_day: bool, expected: datetime) -> None:
    assert report.parse_when(text, option="--until", end_of_day=end_of_day) == expected


@pytest.mark.parametrize("text", ["yesterday", "01/03/2026", ""])
def test_a_date_that_does_not_parse_is_one_line(text: str) -> None:
    with pytest.raises(TranscriberError, match=r"^--since .*: expected a date \(2026-03-01\)"):
        report.parse_when(text, option="--since")
