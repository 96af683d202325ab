"""Where the pipeline's CPU goes while it transcribes one file, process by process, beside raw faster-whisper.

    .venv/bin/python bench/cpu_by_process.py /tmp/transcriber-bench-audio/long_v1_600s_0.m4a

Starts ``transcriber worker --pool=solo``, ``beat`` and ``watch`` (tiny.en, int8, 2 threads, beam 5, VAD,
faster-whisper's own decoding defaults, as bench/pipeline_vs_raw.py's "plain"; settle 0.5 s, poll 1 s) on a fresh
Postgres database ``transcriber_bench_cpu_<pid>`` and Redis database 7 (flushed), copies the file into WATCH_DIR,
and reports the wall time until it is ``completed`` (the model process starts with the first task, so its 0.3 s
load is in) and each process's CPU seconds meanwhile. Then it runs ``model.transcribe(path)`` in this process
with the same options and reports the same two figures. One run each: repeat it to see the machine's spread.

Not the setup that ships: the product's defaults are model base, condition_on_previous_text off,
hallucination_silence_threshold 2 (word timestamps on), WATCH_SETTLE_SECONDS 5 and WATCH_POLL_SECONDS 30.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _snapshot(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, proc in procs.items():
        parent = psutil.Process(proc.pid)
        out[name] = _cpu(parent)
        for child in parent.children(recursive=True):
            key = f"{name}: model process" if "model_process" in " ".join(child.cmdline()) else f"{name}: child"
            out[key] = out.get(key, 0.0) + _cpu(child)
    return out


def pipeline(audio: Path, admin_url: str, redis_url: str) -> tuple[float, dict[str, float]]:
    import redis
    from sqlalchemy import create_engine, text

    from transcriber.migrate import upgrade_to_head

    database = f"transcriber_bench_cpu_{os.getpid()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    url = admin_url.rsplit("/", 1)[0] + "/" + database
    redis.Redis.from_url(redis_url).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="transcriber-cpu-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        upgrade_to_head(url)
        (tmp / "in").mkdir()
        env = {
            **os.environ, "DATABASE_URL": url, "CELERY_BROKER_URL": redis_url, "WATCH_DIR": str(tmp / "in"),
            "OUTPUT_DIR": str(tmp / "out"), "WHISPER_MODEL": "tiny.en", "WHISPER_COMPUTE_TYPE": "int8",
            "WHISPER_CPU_THREADS": "2", "WHISPER_BEAM_SIZE": "5", "WHISPER_VAD_FILTER": "true",
            "WHISPER_CONDITION_ON_PREVIOUS_TEXT": "true", "WHISPER_HALLUCINATION_SILENCE_THRESHOLD": "0",
            "WATCH_SETTLE_SECONDS": "0.5", "WATCH_POLL_SECONDS": "1",
        }  # fmt: skip
        exe = str(Path(sys.executable).parent / "transcriber")
        for name, args in (("worker", ["--pool=solo"]), ("beat", [f"--schedule={tmp / 'schedule'}"]), ("watch", [])):
            log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115
            procs[name] = subprocess.Popen([exe, name, *args], env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        while " ready." not in (tmp / "worker.log").read_text(errors="replace"):  # Celery's "celery@host ready."
            time.sleep(0.2)
        before, began = _snapshot(procs), time.monotonic()
        shutil.copyfile(audio, tmp / "in" / audio.name)
        engine = create_engine(url)
        done = text("SELECT count(*) FROM recordings WHERE status = 'completed'")
        while True:
            with engine.connect() as conn:
                if conn.execute(done).scalar():
                    break
            time.sleep(0.1)
        wall = time.monotonic() - began
        after = _snapshot(procs)
        engine.dispose()
        return wall, {k: after[k] - before.get(k, 0.0) for k in sorted(after)}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


def raw(audio: Path) -> tuple[float, float]:
    from faster_whisper import WhisperModel

    from transcriber.model_store import resolve_model

    model = WhisperModel(resolve_model("tiny.en", None), device="cpu", compute_type="int8", cpu_threads=2)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, began = usage.ru_utime + usage.ru_stime, time.monotonic()
    segments, _ = model.transcribe(str(audio), beam_size=5, vad_filter=True)
    for _ in segments:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.monotonic() - began, usage.ru_utime + usage.ru_stime - cpu0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", type=Path)
    parser.add_argument("--admin-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7", help="flushed first")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped: still stop the services, drop the database
    wall, cpu = pipeline(args.audio, args.admin_url, args.redis_url)
    print(f"pipeline: {wall:.1f}s from copy to completed")
    for name, seconds in cpu.items():
        print(f"  {name:<22} {seconds:6.2f} CPU-s")
    raw_wall, raw_cpu = raw(args.audio)
    print(f"raw model.transcribe(path): {raw_wall:.1f}s, {raw_cpu:.2f} CPU-s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
