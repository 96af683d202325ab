"""The soak (bench/soak.py) at the size of the suite: 12 recordings, two workers, a SIGKILL mid-call every 4-7 s."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak import run_soak  # noqa: E402

pytestmark = pytest.mark.slow


def test_soak_with_random_sigkills_loses_nothing(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    result = run_soak(  # no speaker turns: the soak is about losing nothing (test_speakers.py kills a diarizer)
        tmp_path, database_url=pg_url, redis_url=redis_url, recordings=12, kill_every=(4.0, 7.0), timeout=400,
        diarize="off",
    )  # fmt: skip
    assert result.problems == []  # among them: each of the 12 completed, with its own keyword, once
    assert result.statuses == {"completed": 12}
    assert result.kills >= 1  # under fire: the first kill comes with the first call under way...
    assert result.attempts.get("lost", 0) >= result.kills  # ...and every kill cost the attempt it hit
