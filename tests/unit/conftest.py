"""Unit tests are pure: no database, no broker, no model process, and no settings leaking in.

Every test starts from a scrubbed environment (no variable named after a setting, no
``TRANSCRIBER_ENV_FILE``) in an empty working folder, so a developer's ``.env`` or
exported ``TASK_TIMEOUT_SECONDS`` cannot change what a test sees.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from transcriber.settings import ENV_FILE_VARIABLE, Settings

SETTING_VARIABLES = frozenset({name.upper() for name in Settings.model_fields} | {ENV_FILE_VARIABLE})


@pytest.fixture(autouse=True)
def scrubbed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Remove the app's variables (any case: settings are read case-insensitively) and work in ``tmp_path``."""
    for key in list(os.environ):
        if key.upper() in SETTING_VARIABLES:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path
