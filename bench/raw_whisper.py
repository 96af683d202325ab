"""The raw side of ``bench/pipeline_vs_raw.py``: a plain faster-whisper loop in one process.

    .venv/bin/python bench/raw_whisper.py SPEC.json RESULT.json

SPEC holds ``model`` (a CTranslate2 folder), ``compute_type``, ``threads`` and ``runs``: a list of
``{"name", "batch_size", "options", "files"}``. The model is loaded once; each run transcribes its files in
order, with ``model.transcribe`` (``batch_size`` 0) or ``BatchedInferencePipeline(model).transcribe``, and
joins the segments' text. It is started as its own process so the benchmark can kill it at a deadline.

RESULT has ``import_seconds`` (``import faster_whisper``), ``load_seconds`` (``WhisperModel(...)``), and per
run its wall ``seconds`` and each file's ``seconds``, ``audio_seconds`` (faster-whisper's ``info.duration``)
and ``text``, plus the process's resident memory at the end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    began = time.perf_counter()
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    imported = time.perf_counter()
    model = WhisperModel(spec["model"], device="cpu", compute_type=spec["compute_type"], cpu_threads=spec["threads"])
    loaded = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for run in spec["runs"]:
        options = dict(run.get("options") or {})
        if run.get("batch_size"):
            transcribe = BatchedInferencePipeline(model).transcribe
            options["batch_size"] = run["batch_size"]
        else:
            transcribe = model.transcribe
        files = []
        run_began = time.perf_counter()
        for path in run["files"]:
            file_began = time.perf_counter()
            segments, info = transcribe(path, **options)
            text = " ".join(segment.text for segment in segments)
            seconds = time.perf_counter() - file_began
            files.append({"path": path, "seconds": seconds, "audio_seconds": info.duration, "text": text})
        runs.append({"name": run["name"], "seconds": time.perf_counter() - run_began, "files": files})
    result = {
        "import_seconds": imported - began,
        "load_seconds": loaded - imported,
        "runs": runs,
        "rss_mb": _rss_mb(),
    }
    Path(sys.argv[2]).write_text(json.dumps(result))


def _rss_mb() -> float | None:
    try:
        import psutil

        return round(psutil.Process().memory_info().rss / 2**20, 1)
    except Exception:  # psutil missing: the figure is optional
        return None


if __name__ == "__main__":
    main()
