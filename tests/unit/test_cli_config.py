"""The real ``transcriber`` command with a bad setting: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TRANSCRIBER = Path(sys.executable).parent / "transcriber"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASK_TIMEOUT_SECONDS", "abc"),
        ("WHISPER_DEVICE", "gpu"),
        ("TRANSCRIBER_ENV_FILE", "missing.env"),
    ],
)
def test_bad_setting_is_one_line_and_exit_code_2(tmp_path: Path, variable: str, value: str) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", str(tmp_path)), variable: value}
    result = subprocess.run(
        [str(TRANSCRIBER), "status"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{variable}={value}" in lines[0]
    assert result.stdout == ""
