"""Benchmark: the whole pipeline against a plain faster-whisper loop, same model and decoding, on this machine.

    .venv/bin/python bench/pipeline_vs_raw.py                    # every section, full size (run on an idle machine)
    .venv/bin/python bench/pipeline_vs_raw.py --quick            # every section at about 1/10 size: a smoke run
    .venv/bin/python bench/pipeline_vs_raw.py --only overhead --only resume
    .venv/bin/python bench/pipeline_vs_raw.py --decoding plain --service-timing fast   # the setup of the first figures

By default both sides decode with the product's defaults (``--decoding product``) and the services run with the
product's timing (``--service-timing product``: WATCH_SETTLE_SECONDS 5, WATCH_POLL_SECONDS 30,
CLEANUP_INTERVAL_SECONDS 60, DISPATCH_INTERVAL_SECONDS 2); the resume section uses the product's backoff
(RETRY_BACKOFF_SECONDS 30, RETRY_BACKOFF_MAX_SECONDS 3600) and TASK_MAX_RETRIES 3. What still differs from what
ships: the model (tiny.en here; the product's default is base), the time limit (none, or the resume section's
short one; the product's default is 7200 s), and the pool (solo; on Linux the product's default is prefork with
one child). They are in the results file under "not_shipped".

"Pipeline" is real processes, started the way an operator starts them: ``transcriber worker --pool=solo``
(concurrency 1, the default), ``transcriber beat`` and ``transcriber watch``, on a fresh Postgres database
(``transcriber_bench_pvr_<pid>_<n>``, dropped afterwards) and Redis database 7 (flushed first). Its wall time runs
from the moment the files are copied into WATCH_DIR until every recording is ``completed`` in the database (polled
every 0.2 s); it includes the watcher's settle time, dispatch, the model process's start and model load, decoding,
the database writes and the output files. "Raw" is one process (``bench/raw_whisper.py``) that loads
``WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=cores)`` and calls
``model.transcribe(path, beam_size=5, vad_filter=True, ...)`` per file; its wall includes ``import faster_whisper``
and the model load (both also reported apart). Both sides use the same model, int8, beam 5, VAD on, threads =
cores; ``--decoding`` says which remaining options both get (see --help). Runs never overlap.

Sections (``--only NAME``, repeatable):
  overhead     three 10-minute calls: pipeline wall vs raw wall, ratio (the pipeline's overhead), real-time factor;
               with --decoding product also a third process, "raw, faster-whisper defaults": ``model.transcribe(path)``
               with no options at all (beam 5, VAD off, condition_on_previous_text on, no word timestamps), which
               shows what the product's decoding choices cost against faster-whisper as it comes (--no-reference
               to skip). ``--repeat N`` runs N rounds (raw/pipeline order alternates; ``--first`` picks the first)
  batched      one 20-minute call: raw sequential vs raw batched (batch 8), word agreement; also the pipeline
               with WHISPER_BATCH_SIZE=8 (--no-batched-pipeline to skip)
  small_files  200 distinct calls of 5-10 s: files per minute each way, per-file overhead (pipeline-raw)/N
  memory       resident memory of the worker and of its model process after 10 and after 300 tasks
               (WORKER_MAX_TASKS=0, so the model process is not recycled meanwhile)
  resume       one 20-minute call unlimited, then under TASK_TIMEOUT_SECONDS = 40% of its attempt time
               (the product's retries and backoff unless --resume-backoff/--resume-retries): wall including the
               backoff waits, work time (inside attempts), waits between attempts, attempts, transcript agreement

Word agreement is word accuracy = 1 - WER: the word-level Levenshtein distance between two transcripts (lower-cased,
punctuation removed) divided by the reference's word count; 1.0 means word for word the same.

Audio is speech from espeak-ng (tests/speech.py), cached in /tmp/transcriber-bench-audio by its parameters. Long
calls are ``long_speech(seconds)`` (whole rounds of six sentences, so a "10-minute" call is 625 s), call i after
i x 0.5 s of silence so that every file has its own content hash. Small calls are one or two of 26 sentences at
speeds 140-199 and pitches 30-69, 5.5-9.8 s each, all different.

Each run also counts CPU seconds: the benchmark's own processes, Postgres + Redis, all other processes, and steal.
A run during which other work took more than 5% of the machine is flagged "not idle": run again when it is. On a
machine shared with other work, ``--wait-idle SECONDS`` starts each timed run in a quiet moment (see --help).

Prints a table and writes bench/results/pipeline_vs_raw.<decoding>.json (a --quick run writes
pipeline_vs_raw.<decoding>.quick.json); sections not run this time are kept from the file's previous contents when
decoding, service timing, model, threads, cores and the commit measured match. Exit code 1 if a section failed, 130 if interrupted
(Ctrl-C, SIGTERM); every process started is stopped and every database created is dropped either way.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import hashlib
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

from speech import KEYED_SENTENCES, SENTENCES, long_speech, silence, speak, write_audio  # noqa: E402

SECTIONS = ("overhead", "batched", "small_files", "memory", "resume")
TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")
AUDIO_VERSIONS = {"long": "v1", "small": "v2"}  # part of each cached file's name: change it with its generator
POLL_SECONDS = 0.2


# ---------------------------------------------------------------- sizes and settings


@dataclass(frozen=True)
class Sizes:
    calls: int = 3
    call_seconds: float = 600
    batched_seconds: float = 1200
    small_files: int = 200
    memory_tasks: tuple[int, int] = (10, 300)
    resume_seconds: float = 1200
    resume_fraction: float = 0.4
    section_timeout: float = 3600


FULL = Sizes()
QUICK = Sizes(
    calls=3,
    call_seconds=60,
    batched_seconds=120,
    small_files=20,
    memory_tasks=(3, 30),
    resume_seconds=120,
    section_timeout=900,
)


FAST_TIMING = {"CLEANUP_INTERVAL_SECONDS": "1", "WATCH_SETTLE_SECONDS": "0.5", "WATCH_POLL_SECONDS": "1"}
PRODUCT_TIMING = {"CLEANUP_INTERVAL_SECONDS": "60", "WATCH_SETTLE_SECONDS": "5", "WATCH_POLL_SECONDS": "30",
                  "DISPATCH_INTERVAL_SECONDS": "2"}  # fmt: skip  # the defaults of src/transcriber/settings.py
FW_DEFAULTS: dict[str, Any] = {}  # ``model.transcribe(path)``: beam 5, VAD off, condition on, no word timings


def not_shipped(args: argparse.Namespace) -> list[str]:
    """What this run's setup has that the product, as it ships, does not."""
    out = []
    if args.model != "base":
        out.append(f"model {args.model} (the product's default WHISPER_MODEL is base)")
    if args.decoding == "plain":
        out.append("decoding plain: condition_on_previous_text on, no hallucination_silence_threshold, no word "
                   "timestamps (the product: off, 2 s, word timestamps forced on)")  # fmt: skip
    if args.service_timing == "fast":
        out.append("service timing fast: WATCH_SETTLE_SECONDS 0.5, WATCH_POLL_SECONDS 1, CLEANUP_INTERVAL_SECONDS 1 "
                   "(the product: 5, 30, 60)")  # fmt: skip
    out.append("TASK_TIMEOUT_SECONDS 0 (no limit) outside the resume section's limited run (the product: 7200)")
    out.append("worker --pool=solo, one task at a time (on Linux the product's default pool is prefork with one child)")
    if args.resume_backoff is not None or args.resume_retries is not None:
        out.append(f"resume: RETRY_BACKOFF_SECONDS {args.resume_backoff}, TASK_MAX_RETRIES {args.resume_retries} "
                   "(the product: 30 and 3)")  # fmt: skip
    return out


def decoding(mode: str, threads: int, model: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The pipeline's environment and the raw loop's ``transcribe`` options, equal by construction."""
    env = {
        "WHISPER_MODEL": model,
        "WHISPER_DEVICE": "cpu",
        "WHISPER_COMPUTE_TYPE": "int8",
        "WHISPER_CPU_THREADS": str(threads),
        "WHISPER_BEAM_SIZE": "5",
        "WHISPER_VAD_FILTER": "true",
        "WHISPER_BATCH_SIZE": "0",
        "WHISPER_LANGUAGE": "",
    }
    raw: dict[str, Any] = {"beam_size": 5, "vad_filter": True}
    if mode == "plain":  # faster-whisper's own defaults on the pipeline's side
        env |= {
            "WHISPER_CONDITION_ON_PREVIOUS_TEXT": "true",
            "WHISPER_HALLUCINATION_SILENCE_THRESHOLD": "0",
            "WHISPER_WORD_TIMESTAMPS": "false",
        }
    else:  # the product's defaults on the raw side (the threshold needs word timings: the product turns them on)
        env |= {
            "WHISPER_CONDITION_ON_PREVIOUS_TEXT": "false",
            "WHISPER_HALLUCINATION_SILENCE_THRESHOLD": "2",
            "WHISPER_WORD_TIMESTAMPS": "false",
        }
        raw |= {"condition_on_previous_text": False, "hallucination_silence_threshold": 2.0, "word_timestamps": True}
    return env, raw


# ---------------------------------------------------------------- processes: every one is killed on exit

_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 15.0, *, term: bool = True) -> None:
    """SIGTERM the process group (warm shutdown), SIGKILL it if it lingers."""
    if proc.poll() is None:
        if term:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # also any grandchild left in the group
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    _LIVE.pop(proc.pid, None)


def _kill_all() -> None:
    for proc in list(_LIVE.values()):
        _kill_group(proc, grace=5.0)


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # as Ctrl-C: unwinds through every finally (services stopped, databases dropped)


def start_process(argv: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _LIVE[proc.pid] = proc
    return proc


class SectionTimeout(TimeoutError):
    pass


@dataclass
class Deadline:
    seconds: float
    began: float = field(default_factory=time.monotonic)

    def left(self, what: str) -> float:
        remaining = self.began + self.seconds - time.monotonic()
        if remaining <= 0:
            raise SectionTimeout(f"section timeout ({self.seconds:.0f}s) while {what}")
        return remaining


class CpuMeter:
    """CPU seconds during one run: this benchmark's processes, Postgres + Redis, everything else, and steal.

    "others" is CPU that neither side of the comparison asked for: on an idle machine it stays near 0. A run
    with much of it shared the cores with other work, and its wall time says less.
    """

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.system, self.ours, self.services = psutil.cpu_times(), _our_cpu(), _service_cpu()

    def stop(self) -> dict[str, float]:
        system = psutil.cpu_times()
        busy = sum(_busy(system)) - sum(_busy(self.system))
        ours, services = _our_cpu() - self.ours, _service_cpu() - self.services
        return {
            "wall": round(time.monotonic() - self.began, 2),
            "ours": round(ours, 2),
            "postgres_redis": round(services, 2),
            "others": round(max(0.0, busy - ours - services), 2),
            "steal": round(getattr(system, "steal", 0.0) - getattr(self.system, "steal", 0.0), 2),
        }


def _busy(times: Any) -> list[float]:
    return [getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq")]


def _process_cpu(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system + t.children_user + t.children_system)


def _our_cpu() -> float:
    """This process and every live descendant (a reaped one is in its parent's children_* times)."""
    me = psutil.Process()
    return _process_cpu(me) + sum(_process_cpu(child) for child in me.children(recursive=True))


def _service_cpu() -> float:
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith(("postgres", "redis-server")):
            total += _process_cpu(proc)
    return total


def wait_for_quiet(args: argparse.Namespace, what: str) -> dict[str, Any]:
    """With ``--wait-idle N``: wait (at most N s) until other work has used under 10% of the machine for 10 s.

    On a machine shared with other work (test runs of other people) this starts a round (a raw run and a pipeline
    run back to back) or a section in a quiet moment; the runs within it follow at once, so that both sides of a
    comparison meet the same conditions. The CPU that other work used during each run is measured and reported.
    """
    if not args.wait_idle:
        return {"waited_seconds": 0.0}
    cores, began, said = os.cpu_count() or 1, time.monotonic(), 0.0
    while True:
        meter = CpuMeter()
        time.sleep(10)
        cpu = meter.stop()
        share = (cpu["others"] + cpu["steal"] + cpu["postgres_redis"]) / (cpu["wall"] * cores)
        waited = time.monotonic() - began
        if share < 0.10 or waited >= args.wait_idle:
            return {"waited_seconds": round(waited, 1), "others_share_last_10s": round(share, 3), "quiet": share < 0.10}
        if waited - said >= 60:
            said = waited
            print(
                f"   waiting for a quiet machine before {what}: other work {100 * share:.0f}% ({waited:.0f}s)",
                flush=True,
            )


def busy_warning(cpu: dict[str, float], cores: int) -> str:
    """A warning when other work took more than 5% of the machine during a run."""
    capacity = cpu["wall"] * cores
    if capacity and (cpu["others"] + cpu["steal"]) > 0.05 * capacity:
        return f" WARNING: other work used {cpu['others'] + cpu['steal']:.1f} CPU-s of {capacity:.0f}: not idle"
    return ""


# ---------------------------------------------------------------- audio, cached by its parameters


class Audio:
    def __init__(self, cache: Path) -> None:
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)

    def _cached(self, name: str, make: Callable[[], np.ndarray]) -> Path:
        path = self.cache / name
        if not path.is_file():
            partial = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
            write_audio(partial, make())
            os.replace(partial, path)
        return path

    def long_call(self, seconds: float, variant: int = 0) -> Path:
        """``long_speech(seconds)`` after ``variant`` x 0.5 s of silence: same speech, different file content."""
        return self._cached(
            f"long_{AUDIO_VERSIONS['long']}_{seconds:g}s_{variant}.m4a",
            lambda: np.concatenate([silence(0.5 * variant), long_speech(seconds)]),
        )

    def small_calls(self, count: int) -> list[Path]:
        return [
            self._cached(f"small_{AUDIO_VERSIONS['small']}_{i:04d}.m4a", functools.partial(small_clip, i))
            for i in range(count)
        ]


SMALL_SENTENCES = SENTENCES + [sentence for _, sentence in KEYED_SENTENCES]


def small_clip(index: int) -> np.ndarray:
    """5-10 s of speech, different for every index: one or two sentences, voice speed and pitch vary."""
    rng = random.Random(index)
    first, second = rng.sample(range(len(SMALL_SENTENCES)), 2)
    speed, pitch = 140 + (index * 7) % 60, 30 + (index * 13) % 40
    parts = [silence(0.2 + (index % 5) * 0.1), speak(SMALL_SENTENCES[first], speed=speed, pitch=pitch)]
    more = speak(SMALL_SENTENCES[second], speed=speed, pitch=pitch)
    if sum(map(len, parts)) + 8000 + len(more) <= 9.4 * 16000:  # with the tail below, under 10 s
        parts += [silence(0.5), more]
    clip = np.concatenate(parts)
    return np.concatenate([clip, silence(max(0.0, 5.2 - len(clip) / 16000) + 0.3)])


def audio_seconds(path: Path) -> float:
    from transcriber.audio import probe_duration

    return float(probe_duration(str(path)) or 0.0)


def check_distinct(files: list[Path]) -> None:
    """The watcher keeps one recording per content hash: every file of a run must differ."""
    digests = {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    if len(digests) != len(files):
        raise RuntimeError(f"{len(files) - len(digests)} generated files have the same content as another")


# ---------------------------------------------------------------- transcripts


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_accuracy(reference: str, hypothesis: str) -> float:
    """1 - WER: word-level Levenshtein distance over the reference's word count (1.0 = identical)."""
    ref, hyp = words(reference), words(hypothesis)
    while ref and hyp and ref[0] == hyp[0]:  # equal ends cost nothing; trimming them keeps this fast
        ref, hyp = ref[1:], hyp[1:]
    while ref and hyp and ref[-1] == hyp[-1]:
        ref, hyp = ref[:-1], hyp[:-1]
    total = len(words(reference))
    if not total:
        return 1.0 if not words(hypothesis) else 0.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return round(1 - previous[-1] / total, 4)


def mean_accuracy(references: list[str], hypotheses: list[str]) -> float:
    pairs = list(zip(references, hypotheses, strict=True))
    return round(sum(word_accuracy(r, h) for r, h in pairs) / len(pairs), 4) if pairs else 0.0


# ---------------------------------------------------------------- the bench: settings shared by every section


@dataclass
class Bench:
    args: argparse.Namespace
    sizes: Sizes
    work: Path
    audio: Audio
    model_path: str
    env: dict[str, str]
    raw_options: dict[str, Any]
    runs: int = 0
    wait_pending: bool = True  # the next timed run waits for a quiet machine (--wait-idle) first

    def quiet(self, what: str) -> dict[str, Any]:
        """Wait for a quiet machine once per round or section; the runs after it start at once."""
        if not self.wait_pending:
            return {"waited_seconds": 0.0, "after_the_previous_run": True}
        self.wait_pending = False
        return wait_for_quiet(self.args, what)

    def deadline(self) -> Deadline:
        return Deadline(self.args.section_timeout or self.sizes.section_timeout)

    def run_raw(self, label: str, runs: list[dict[str, Any]], deadline: Deadline) -> dict[str, Any]:
        """One raw process; returns its result with ``wall_seconds`` = import + load + every run."""
        self.runs += 1
        folder = self.work / f"raw-{self.runs}-{label}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"model": self.model_path, "compute_type": "int8", "threads": self.args.threads, "runs": runs}
        (folder / "spec.json").write_text(json.dumps(spec))
        argv = [sys.executable, str(BENCH / "raw_whisper.py"), str(folder / "spec.json"), str(folder / "result.json")]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "CT2_"))}
        quiet = self.quiet(f"raw {label}")
        meter = CpuMeter()
        proc = start_process(argv, folder / "raw.log", env, folder)
        try:
            code = proc.wait(timeout=deadline.left(f"running raw {label}"))
        except subprocess.TimeoutExpired:
            raise SectionTimeout(f"section timeout while running raw {label}") from None
        finally:
            _kill_group(proc, grace=1.0)
        if code != 0:
            raise RuntimeError(f"raw {label} exited with {code}:\n{_tail(folder / 'raw.log')}")
        result: dict[str, Any] = json.loads((folder / "result.json").read_text())
        result["cpu"] = meter.stop()
        result["quiet"] = quiet
        result["wall_seconds"] = (
            result["import_seconds"] + result["load_seconds"] + sum(r["seconds"] for r in result["runs"])
        )
        return result

    def pipeline(self, label: str, **env: str) -> Pipeline:
        self.runs += 1
        return Pipeline(self, label, f"{DB_PREFIX}{os.getpid()}_{self.runs}", env)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# ---------------------------------------------------------------- the pipeline: real service processes

READY = {"worker": "ready.", "beat": "beat: Starting", "watch": "watching "}
DB_PREFIX = "transcriber_bench_pvr_"  # never the test suite's transcriber_t_* / transcriber_tpl_*
LOADED = re.compile(r"model \S+ loaded in ([0-9.]+)s")


class Pipeline:
    """worker + beat + watch on a fresh database; a context manager that always stops and drops everything."""

    def __init__(self, bench: Bench, label: str, database: str, env: dict[str, str]) -> None:
        self.bench, self.label, self.database = bench, label, database
        self.folder = bench.work / f"pipeline-{bench.runs}-{label}"
        self.watch_dir = self.folder / "inbox"
        self.output_dir = self.folder / "transcripts"
        self.url = bench.args.postgres_url.rsplit("/", 1)[0] + "/" + database
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(self.folder)),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": self.url,
            "CELERY_BROKER_URL": bench.args.redis_url,
            "WATCH_DIR": str(self.watch_dir),
            "OUTPUT_DIR": str(self.output_dir),
            **(FAST_TIMING if bench.args.service_timing == "fast" else PRODUCT_TIMING),
            "TASK_TIMEOUT_SECONDS": "0",
            **bench.env,
            **env,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.engine: Any = None

    def settings(self) -> dict[str, str]:
        """What was set for this run (paths and URLs left out)."""
        skip = {"PATH", "HOME", "LANG", "PYTHONUNBUFFERED", "DATABASE_URL", "WATCH_DIR", "OUTPUT_DIR"}
        return {k: v for k, v in sorted(self.env.items()) if k not in skip}

    def __enter__(self) -> Pipeline:
        from sqlalchemy import create_engine

        from transcriber.migrate import upgrade_to_head

        for folder in (self.watch_dir, self.output_dir):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            _admin_sql(self.bench.args.postgres_url, f'CREATE DATABASE "{self.database}"')
            upgrade_to_head(self.url)
            self.engine = create_engine(self.url, pool_size=1)
            _flush_redis(self.bench.args.redis_url)
            for command in ("worker", "beat", "watch"):
                self._start(command)
            deadline = time.monotonic() + 120
            for command in self.procs:
                self._wait_ready(command, deadline)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for proc in self.procs.values():  # every group gets SIGTERM first, then each is waited for
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            _kill_group(proc, term=False)
        if self.engine is not None:
            self.engine.dispose()
        with contextlib.suppress(Exception):
            _admin_sql(self.bench.args.postgres_url, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _start(self, command: str) -> None:
        extra = {"worker": ["--pool=solo"], "beat": [f"--schedule={self.folder / 'beat-schedule'}"]}.get(command, [])
        self.procs[command] = start_process(
            [TRANSCRIBER, command, *extra], self.folder / f"{command}.log", self.env, self.folder
        )

    def _wait_ready(self, command: str, deadline: float) -> None:
        while READY[command] not in self.log(command):
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not start within 120 s:\n{self.log(command)[-3000:]}")
            time.sleep(0.1)

    def log(self, command: str) -> str:
        return (self.folder / f"{command}.log").read_text(errors="replace")

    def check_alive(self) -> None:
        for command, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{command} exited with {proc.returncode}:\n{self.log(command)[-3000:]}")

    def query(self, sql: str) -> list[Any]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return list(conn.execute(text(sql)).all())

    def drop(self, files: list[Path]) -> float:
        """Copy the files into WATCH_DIR; returns the clock's start (``time.time()`` just before the copy)."""
        began = time.time()
        for path in files:
            shutil.copyfile(path, self.watch_dir / path.name)
        return began

    def wait_completed(self, count: int, began: float, deadline: Deadline) -> float:
        """Poll the database until ``count`` recordings are completed; seconds since ``began``."""
        while True:
            counts = dict(self.query("SELECT status, count(*) FROM recordings GROUP BY status"))
            if counts.get("completed", 0) >= count:
                return time.time() - began
            if counts.get("failed", 0):
                errors = self.query("SELECT file_name, error_message FROM recordings WHERE status = 'failed' LIMIT 3")
                raise RuntimeError(f"{counts['failed']} recording(s) failed: {errors}")
            self.check_alive()
            deadline.left(f"waiting for {count} recordings in {self.label} (now {counts})")
            time.sleep(POLL_SECONDS)

    def run(self, files: list[Path], deadline: Deadline) -> dict[str, Any]:
        """Drop the files, wait for all to complete; the wall, transcripts and where the time went."""
        quiet = self.bench.quiet(f"pipeline {self.label}")
        meter = CpuMeter()
        began = self.drop(files)
        wall = self.wait_completed(len(files), began, deadline)
        cpu = meter.stop()
        return {
            "wall_seconds": round(wall, 2),
            **self.breakdown(began),
            "cpu": cpu,
            "quiet": quiet,
            "settings": self.settings(),
        }

    def breakdown(self, began: float) -> dict[str, Any]:
        """From the database's timestamps (seconds after the copy began) and the worker's log."""
        recordings = self.query(
            "SELECT file_name, transcript, created_at, finished_at, duration_seconds FROM recordings ORDER BY file_name"
        )
        attempts = self.query(
            "SELECT started_at, finished_at, outcome, audio_start_seconds, audio_end_seconds, time_limit_seconds "
            "FROM attempts ORDER BY started_at"
        )

        def after(moment: datetime) -> float:
            return round(moment.timestamp() - began, 2)

        in_attempts = sum((a.finished_at - a.started_at).total_seconds() for a in attempts if a.finished_at)
        gaps = [
            (b.started_at - a.finished_at).total_seconds() for a, b in itertools.pairwise(attempts) if a.finished_at
        ]
        loads = [float(m) for m in LOADED.findall(self.log("worker"))]
        return {
            "transcripts": {r.file_name: r.transcript or "" for r in recordings},
            "audio_seconds": round(sum(r.duration_seconds or 0.0 for r in recordings), 1),
            "first_registered_after": after(min(r.created_at for r in recordings)),
            "last_registered_after": after(max(r.created_at for r in recordings)),
            "first_attempt_after": after(attempts[0].started_at) if attempts else None,
            "last_completed_after": after(max(r.finished_at for r in recordings)),
            "attempts": len(attempts),
            "attempt_outcomes": [a.outcome for a in attempts],
            "attempt_audio": [[a.audio_start_seconds, a.audio_end_seconds] for a in attempts],
            "seconds_in_attempts": round(in_attempts, 2),
            "seconds_between_attempts": round(sum(gaps), 2),
            "max_gap_between_attempts": round(max(gaps, default=0.0), 2),
            "model_loads_seconds": loads,
        }

    def rss_mb(self) -> dict[str, float | None]:
        """Resident memory of the worker process and of its model process (the child running model_process)."""
        worker = psutil.Process(self.procs["worker"].pid)
        model = [p for p in worker.children(recursive=True) if "transcriber.model_process" in " ".join(_cmdline(p))]
        return {
            "worker_rss_mb": round(worker.memory_info().rss / 2**20, 1),
            "model_rss_mb": round(model[0].memory_info().rss / 2**20, 1) if model else None,
            "model_pid": model[0].pid if model else None,
        }


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _admin_sql(admin_url: str, sql: str) -> list[Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            result = conn.execute(text(sql))
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def _flush_redis(url: str) -> None:
    """Empty the broker's database, unless another program is connected to it (never flush someone's queue)."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        me = client.client_id()
        others = [c for c in client.client_list() if int(c.get("db", -1)) == db and int(c["id"]) != me]
        if others:
            raise RuntimeError(
                f"{len(others)} other client(s) use Redis database {db} ({others[0].get('addr')}, "
                f"{others[0].get('cmd')}): another benchmark or test run? Pass --redis-url with a free database"
            )
        client.flushdb()
    finally:
        client.close()


def preflight(args: argparse.Namespace, *, bench: str = "pipeline_vs_raw", prefix: str = DB_PREFIX) -> None:
    """Postgres, Redis, espeak-ng and the transcriber command: one clear line each when missing. Then the
    databases (named ``prefix``PID_N) of earlier runs of ``bench`` that died are dropped."""
    import redis

    problems = []
    try:
        _admin_sql(args.postgres_url, "SELECT 1")
    except Exception as exc:
        problems.append(f"Postgres is not reachable at {args.postgres_url}: {str(exc).splitlines()[0]}")
    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=5).ping()
    except Exception as exc:
        problems.append(f"Redis is not reachable at {args.redis_url}: {exc}")
    if shutil.which("espeak-ng") is None:
        problems.append("espeak-ng is not installed (it makes the test speech): apt-get install espeak-ng")
    if not Path(TRANSCRIBER).is_file():
        problems.append(f"{TRANSCRIBER} not found: run with the project's venv (.venv/bin/python)")
    if problems:
        sys.exit(f"{bench}: cannot start:\n  " + "\n  ".join(problems) + "\n(scripts/test starts both services)")
    _drop_leftovers(args.postgres_url, prefix)


def _drop_leftovers(admin_url: str, prefix: str) -> None:
    """Databases of earlier runs that died (their pid is gone) are dropped."""
    pattern = prefix.replace("_", "\\_")
    query = f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}%'"
    for (name,) in _admin_sql(admin_url, query):
        try:
            os.kill(int(name[len(prefix) :].split("_")[0]), 0)
        except (ValueError, IndexError, ProcessLookupError):
            _admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except PermissionError:
            pass


# ---------------------------------------------------------------- sections


@dataclass
class Row:
    section: str
    run: str
    files: int
    audio_seconds: float
    wall_seconds: float
    note: str = ""
    cpu: dict[str, float] | None = None

    @property
    def realtime(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def files_per_minute(self) -> float:
        return 60 * self.files / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "files": self.files,
            "audio_seconds": round(self.audio_seconds, 1),
            "wall_seconds": round(self.wall_seconds, 2),
            "realtime_factor": round(self.realtime, 2),
            "files_per_minute": round(self.files_per_minute, 1),
            "note": self.note,
            "cpu_seconds": self.cpu,
        }


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def raw_row(section: str, run: str, result: dict[str, Any], files: int, audio: float) -> Row:
    note = f"incl. import {result['import_seconds']:.1f}s + model load {result['load_seconds']:.1f}s"
    return Row(section, run, files, audio, result["wall_seconds"], note, result["cpu"])


def cpu_summary(rows: list[Row]) -> list[str]:
    """One line of CPU seconds per run, and a warning for each run the machine was not idle during."""
    cores = os.cpu_count() or 1
    parts, warnings = [], []
    for row in rows:
        if row.cpu:
            c = row.cpu
            parts.append(f"{row.run} {c['ours']:.1f}/{c['postgres_redis']:.1f}/{c['others']:.1f}/{c['steal']:.1f}")
            if warning := busy_warning(c, cores):
                warnings.append(f"{row.run}:{warning}")
    if not parts:
        return []
    return ["CPU-s ours/postgres+redis/others/steal: " + "; ".join(parts), *warnings]


def texts(result: dict[str, Any], run: int = 0) -> dict[str, str]:
    return {Path(f["path"]).name: f["text"] for f in result["runs"][run]["files"]}


def paired_runs(
    bench: Bench, label: str, files: list[Path], deadline: Deadline, *, reference: bool = False
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """``--repeat`` pairs of a raw run and a pipeline run, back to back; each side's median run.

    Which of the two goes first alternates from round to round (``--first`` picks round 1's). With ``reference``
    each round also runs raw with faster-whisper's own defaults, outside the pair: after it when raw went first,
    before it when the pipeline did, so raw and pipeline always run next to each other.
    """
    raws: list[dict[str, Any]] = []
    pipes: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    orders: list[str] = []

    def raw() -> None:
        raws.append(bench.run_raw(label, [_raw_run("sequential", files, bench.raw_options)], deadline))

    def piped() -> None:
        with bench.pipeline(label) as pipeline:
            pipes.append(pipeline.run(files, deadline))

    def ref() -> None:
        refs.append(bench.run_raw(f"{label}-fw-defaults", [_raw_run("fw defaults", files, FW_DEFAULTS)], deadline))

    raw_first = bench.args.first == "raw"
    for _ in range(bench.args.repeat):
        steps = [raw, piped] if raw_first else [piped, raw]
        if reference:
            steps = [*steps, ref] if raw_first else [ref, *steps]
        orders.append("raw, pipeline" if raw_first else "pipeline, raw")
        bench.wait_pending = True
        for step in steps:
            step()
        raw_first = not raw_first
    pairs: list[dict[str, Any]] = [
        {
            "order": order,
            "raw": r["wall_seconds"],
            "pipeline": p["wall_seconds"],
            "ratio": round(p["wall_seconds"] / r["wall_seconds"], 3),
            "raw_cpu": r["cpu"],
            "pipeline_cpu": p["cpu"],
            "cpu_ratio": round(p["cpu"]["ours"] / r["cpu"]["ours"], 3) if r["cpu"]["ours"] else None,
        }
        for order, r, p in zip(orders, raws, pipes, strict=True)
    ]
    for pair, r in zip(pairs, refs, strict=False):
        pair["raw_fw_defaults"] = round(r["wall_seconds"], 2)
        pair["raw_fw_defaults_cpu"] = r["cpu"]
    return _median(raws), _median(pipes), pairs, (_median(refs) if refs else None)


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(results, key=lambda r: float(r["wall_seconds"]))[(len(results) - 1) // 2]


def repeats_line(pairs: list[dict[str, Any]]) -> list[str]:
    shown = ", ".join(
        f"{p['pipeline']:.1f}/{p['raw']:.1f}={p['ratio']:.3f} ({p['order']}; own CPU-s ratio {p['cpu_ratio']})"
        for p in pairs
    )
    ratios = [p["ratio"] for p in pairs]
    spread = f"; ratio spread {min(ratios):.3f}-{max(ratios):.3f}" if len(pairs) > 1 else ""
    return [f"{len(pairs)} round(s) (median of each side shown above); pipeline/raw per round: {shown}{spread}"]


def section_overhead(bench: Bench, deadline: Deadline) -> Outcome:
    sizes = bench.sizes
    files = [bench.audio.long_call(sizes.call_seconds, variant) for variant in range(sizes.calls)]
    check_distinct(files)
    audio = sum(audio_seconds(f) for f in files)
    reference = bench.args.reference and bench.args.decoding == "product"
    raw, piped, pairs, ref = paired_runs(bench, "overhead", files, deadline, reference=reference)
    out = Outcome(summary=repeats_line(pairs))
    out.rows.append(
        Row("overhead", "pipeline", len(files), audio, piped["wall_seconds"], "incl. model load", piped["cpu"])
    )
    out.rows.append(raw_row("overhead", "raw loop", raw, len(files), audio))
    if ref is not None:
        out.rows.append(raw_row("overhead", "raw, fw defaults", ref, len(files), audio))
    ratio = piped["wall_seconds"] / raw["wall_seconds"]
    raw_texts = texts(raw)
    agreement = mean_accuracy(
        [raw_texts[n] for n in sorted(raw_texts)], [piped["transcripts"][n] for n in sorted(raw_texts)]
    )
    outside = piped["wall_seconds"] - piped["seconds_in_attempts"]
    out.summary += [
        f"overhead = pipeline/raw = {ratio:.3f} ({piped['wall_seconds'] - raw['wall_seconds']:+.1f}s over "
        f"{len(files)} calls of {sizes.call_seconds / 60:g} min)",
        f"pipeline: {piped['seconds_in_attempts']:.1f}s inside attempts, {outside:.1f}s outside (settle, watch, "
        f"dispatch, model load {sum(piped['model_loads_seconds']):.1f}s; first attempt began "
        f"{piped['first_attempt_after']}s after the copy); raw per-file sum {_raw_file_sum(raw):.1f}s",
        f"transcripts pipeline vs raw: word accuracy {agreement:.4f}",
    ]
    out.data = {
        "pipeline": _without_transcripts(piped),
        "raw": _raw_summary(raw),
        "raw_options": bench.raw_options,
        "overhead_ratio": round(ratio, 3),
        "word_accuracy_pipeline_vs_raw": agreement,
        "repeats": pairs,
    }
    if ref is not None:
        ref_texts = texts(ref)
        ref_agreement = mean_accuracy(
            [ref_texts[n] for n in sorted(raw_texts)], [raw_texts[n] for n in sorted(raw_texts)]
        )
        out.summary.append(
            f"raw with faster-whisper's own defaults (model.transcribe(path)): {ref['wall_seconds']:.1f}s; raw with "
            f"the product's options / that = {raw['wall_seconds'] / ref['wall_seconds']:.3f}, pipeline / that = "
            f"{piped['wall_seconds'] / ref['wall_seconds']:.3f}; word accuracy product options vs fw defaults "
            f"{ref_agreement:.4f}"
        )
        out.data |= {
            "raw_fw_defaults": _raw_summary(ref),
            "raw_fw_defaults_options": FW_DEFAULTS,
            "word_accuracy_product_options_vs_fw_defaults": ref_agreement,
        }
    return out


def section_batched(bench: Bench, deadline: Deadline) -> Outcome:
    call = bench.audio.long_call(bench.sizes.batched_seconds)
    audio = audio_seconds(call)
    runs = [_raw_run("sequential", [call], bench.raw_options), _raw_run("batched", [call], bench.raw_options, 8)]
    raw = bench.run_raw("batched", runs, deadline)
    sequential, batched = (r["seconds"] for r in raw["runs"])
    seq_text, batch_text = texts(raw, 0)[call.name], texts(raw, 1)[call.name]
    out = Outcome()
    note = "transcribe only (model loaded once for both)"
    out.rows.append(Row("batched", "raw sequential", 1, audio, sequential, note))
    out.rows.append(Row("batched", "raw batched (8)", 1, audio, batched, note, raw["cpu"]))
    accuracy = word_accuracy(seq_text, batch_text)
    out.summary.append(
        f"batched/sequential speed-up {sequential / batched:.2f}x; word accuracy batched vs sequential {accuracy:.4f} "
        f"({len(words(seq_text))} vs {len(words(batch_text))} words)"
    )
    out.data = {"raw": _raw_summary(raw), "speedup": round(sequential / batched, 3), "word_accuracy": accuracy}
    if bench.args.batched_pipeline:
        with bench.pipeline("batched", WHISPER_BATCH_SIZE="8") as pipeline:
            piped = pipeline.run([call], deadline)
        out.rows.append(
            Row("batched", "pipeline batched (8)", 1, audio, piped["wall_seconds"], "incl. model load", piped["cpu"])
        )
        piped_accuracy = word_accuracy(batch_text, piped["transcripts"][call.name])
        out.summary.append(f"pipeline batched vs raw batched: word accuracy {piped_accuracy:.4f}")
        out.data |= {"pipeline": _without_transcripts(piped), "word_accuracy_pipeline_vs_raw": piped_accuracy}
    return out


def section_small_files(bench: Bench, deadline: Deadline) -> Outcome:
    files = bench.audio.small_calls(bench.sizes.small_files)
    check_distinct(files)
    audio = sum(audio_seconds(f) for f in files)
    raw, piped, pairs, _ = paired_runs(bench, "small_files", files, deadline)
    n = len(files)
    out = Outcome(summary=repeats_line(pairs))
    out.rows.append(Row("small_files", "pipeline", n, audio, piped["wall_seconds"], "incl. model load", piped["cpu"]))
    out.rows.append(raw_row("small_files", "raw loop", raw, n, audio))
    per_file = (piped["wall_seconds"] - raw["wall_seconds"]) / n
    in_attempt = (piped["seconds_in_attempts"] - _raw_file_sum(raw)) / n
    steady = (piped["last_completed_after"] - piped["first_attempt_after"] - _raw_file_sum(raw)) / n
    out.summary += [
        f"per-file overhead (pipeline wall - raw wall)/N = {per_file:.3f}s; steady state (first attempt to last "
        f"completion, less raw per-file time)/N = {steady:.3f}s, of which inside attempts {in_attempt:.3f}s",
        f"files {audio / n:.1f}s long on average; first registered {piped['first_registered_after']:.1f}s, "
        f"first attempt {piped['first_attempt_after']:.1f}s after the copy",
    ]
    raw_texts = texts(raw)
    agreement = mean_accuracy(
        [raw_texts[k] for k in sorted(raw_texts)], [piped["transcripts"][k] for k in sorted(raw_texts)]
    )
    out.summary.append(f"transcripts pipeline vs raw: mean word accuracy {agreement:.4f}")
    out.data = {
        "pipeline": _without_transcripts(piped),
        "raw": _raw_summary(raw),
        "per_file_overhead_seconds": round(per_file, 3),
        "per_file_overhead_in_attempt_seconds": round(in_attempt, 3),
        "per_file_overhead_steady_seconds": round(steady, 3),
        "word_accuracy_pipeline_vs_raw": agreement,
        "repeats": pairs,
    }
    return out


def section_memory(bench: Bench, deadline: Deadline) -> Outcome:
    early, total = bench.sizes.memory_tasks
    files = bench.audio.small_calls(total)
    check_distinct(files)
    out = Outcome()
    samples: dict[str, Any] = {}
    audio = sum(audio_seconds(f) for f in files)
    with bench.pipeline("memory", WORKER_MAX_TASKS="0") as pipeline:
        meter = CpuMeter()
        began = pipeline.drop(files[:early])
        pipeline.wait_completed(early, began, deadline)
        samples[str(early)] = pipeline.rss_mb()
        pipeline.drop(files[early:])
        wall = pipeline.wait_completed(total, began, deadline)
        samples[str(total)] = pipeline.rss_mb()
        cpu = meter.stop()
        loads = [float(m) for m in LOADED.findall(pipeline.log("worker"))]
    out.rows.append(Row("memory", "pipeline", total, audio, wall, "WORKER_MAX_TASKS=0, incl. model load", cpu))
    first, last = samples[str(early)], samples[str(total)]
    for tasks, sample in samples.items():
        out.summary.append(
            f"after {tasks:>4} tasks: worker {sample['worker_rss_mb']} MB, model process {sample['model_rss_mb']} MB "
            f"(pid {sample['model_pid']})"
        )
    same = first["model_pid"] == last["model_pid"]
    growth = (last["model_rss_mb"] or 0) - (first["model_rss_mb"] or 0)
    out.summary.append(
        f"model process grew {growth:+.1f} MB over {total - early} tasks (same process: {same}); worker grew "
        f"{last['worker_rss_mb'] - first['worker_rss_mb']:+.1f} MB; model loads {len(loads)}"
    )
    out.data = {
        "rss": samples,
        "model_loads": len(loads),
        "wall_seconds": round(wall, 1),
        "settings": {"WORKER_MAX_TASKS": "0"},
    }
    return out


def section_resume(bench: Bench, deadline: Deadline) -> Outcome:
    call = bench.audio.long_call(bench.sizes.resume_seconds)
    audio = audio_seconds(call)
    with bench.pipeline("resume-unlimited") as pipeline:
        unlimited = pipeline.run([call], deadline)
    attempt_seconds = unlimited["seconds_in_attempts"]
    limit = max(3, round(bench.sizes.resume_fraction * attempt_seconds))
    env = {"TASK_TIMEOUT_SECONDS": str(limit)}
    if bench.args.resume_retries is not None:
        env["TASK_MAX_RETRIES"] = str(bench.args.resume_retries)
    if bench.args.resume_backoff is not None:
        env["RETRY_BACKOFF_SECONDS"] = f"{bench.args.resume_backoff:g}"
    with bench.pipeline("resume-limited", **env) as pipeline:
        limited = pipeline.run([call], deadline)
    backoff = env.get("RETRY_BACKOFF_SECONDS", "30 (product default)")
    retries = env.get("TASK_MAX_RETRIES", "3 (product default)")
    out = Outcome()
    out.rows.append(
        Row("resume", "pipeline, no limit", 1, audio, unlimited["wall_seconds"], "1 attempt", unlimited["cpu"])
    )
    out.rows.append(
        Row(
            "resume",
            f"pipeline, limit {limit}s",
            1,
            audio,
            limited["wall_seconds"],
            f"{limited['attempts']} attempts",
            limited["cpu"],
        )
    )
    reference, resumed = unlimited["transcripts"][call.name], limited["transcripts"][call.name]
    accuracy = word_accuracy(reference, resumed)
    out.summary += [
        f"unlimited attempt took {attempt_seconds:.1f}s; limit {limit}s "
        f"({100 * limit / attempt_seconds:.0f}%): {limited['attempts']} attempts {limited['attempt_outcomes']}",
        f"audio covered per attempt (from, to): {limited['attempt_audio']}",
        f"RETRY_BACKOFF_SECONDS {backoff}, RETRY_BACKOFF_MAX_SECONDS 3600, TASK_MAX_RETRIES {retries}",
        f"resumed/unlimited wall (backoff waits included) {limited['wall_seconds'] / unlimited['wall_seconds']:.2f}x; "
        f"work inside attempts {limited['seconds_in_attempts']:.1f}s vs {attempt_seconds:.1f}s unlimited "
        f"({limited['seconds_in_attempts'] / attempt_seconds:.2f}x); waits between attempts "
        f"{limited['seconds_between_attempts']:.1f}s (longest {limited['max_gap_between_attempts']:.1f}s); "
        f"model loads {len(limited['model_loads_seconds'])} ({sum(limited['model_loads_seconds']):.1f}s)",
        f"transcript resumed vs unlimited: word accuracy {accuracy:.4f} "
        f"({len(words(reference))} vs {len(words(resumed))} words)",
    ]
    out.data = {
        "unlimited": _without_transcripts(unlimited),
        "limited": _without_transcripts(limited),
        "time_limit_seconds": limit,
        "settings": env,
        "wall_ratio": round(limited["wall_seconds"] / unlimited["wall_seconds"], 3),
        "work_ratio": round(limited["seconds_in_attempts"] / attempt_seconds, 3),
        "word_accuracy": accuracy,
    }
    return out


def _raw_run(name: str, files: list[Path], options: dict[str, Any], batch_size: int = 0) -> dict[str, Any]:
    return {"name": name, "batch_size": batch_size, "options": options, "files": [str(f) for f in files]}


def _raw_file_sum(result: dict[str, Any]) -> float:
    return sum(f["seconds"] for run in result["runs"] for f in run["files"])


def _raw_summary(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "wall_seconds": round(result["wall_seconds"], 2),
        "import_seconds": round(result["import_seconds"], 2),
        "load_seconds": round(result["load_seconds"], 2),
        "rss_mb": result.get("rss_mb"),
        "runs": [
            {
                "name": r["name"],
                "seconds": round(r["seconds"], 2),
                "file_seconds": [round(f["seconds"], 2) for f in r["files"]],
            }
            for r in result["runs"]
        ],
    }


def _without_transcripts(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "transcripts"}


RUNNERS: dict[str, Callable[[Bench, Deadline], Outcome]] = {
    "overhead": section_overhead,
    "batched": section_batched,
    "small_files": section_small_files,
    "memory": section_memory,
    "resume": section_resume,
}


# ---------------------------------------------------------------- report


HEADER = (
    f"{'section':<12} {'run':<22} {'files':>5} {'audio s':>8} {'wall s':>8} {'x realtime':>10} {'files/min':>9}  note"
)


def format_rows(rows: list[Row]) -> list[str]:
    return [
        f"{r.section:<12} {r.run:<22} {r.files:>5} {r.audio_seconds:>8.1f} {r.wall_seconds:>8.2f} "
        f"{r.realtime:>10.2f} {r.files_per_minute:>9.1f}  {r.note}"
        for r in rows
    ]


def print_report(machine: dict[str, Any], outcomes: dict[str, Outcome], errors: dict[str, str]) -> None:
    print()
    print(
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['ram_gib']} GiB; Python {machine['python']}, "
        f"faster-whisper {machine['faster_whisper']}, ctranslate2 {machine['ctranslate2']}; model {machine['model']} "
        f"{machine['compute_type']}, {machine['threads']} threads, beam 5, VAD on, decoding {machine['decoding']}, "
        f"service timing {machine['service_timing']}"
    )
    for line in machine["not_shipped"]:
        print(f"  not as shipped: {line}")
    print(HEADER)
    print("-" * len(HEADER))
    for name in SECTIONS:
        if name in outcomes:
            for line in format_rows(outcomes[name].rows):
                print(line)
            for line in outcomes[name].summary:
                print(f"{'':<12} {line}")
        elif name in errors:
            print(f"{name:<12} FAILED: {errors[name].splitlines()[0]}")


def source_commit() -> str:
    """The last commit that changed src/ (the code measured), "+changes" if src/ differs from it."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%H", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "src"]).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def machine_info(args: argparse.Namespace, model_path: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "faster_whisper": version("faster-whisper"),
        "ctranslate2": version("ctranslate2"),
        "model": args.model,
        "model_path": model_path,
        "compute_type": "int8",
        "threads": args.threads,
        "beam_size": 5,
        "vad_filter": True,
        "decoding": args.decoding,
        "service_timing": args.service_timing,
        "commit": source_commit(),
        "not_shipped": not_shipped(args),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


COMPARABLE = (
    "decoding",
    "service_timing",
    "model",
    "threads",
    "cores",
    "commit",
)  # earlier sections are kept only when these match


def all_rounds(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and spread over every round of a section (``--add-rounds`` collects them across invocations)."""

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    ratios = [p["ratio"] for p in pairs]
    out: dict[str, Any] = {
        "rounds": len(pairs),
        "ratio_median": round(median(ratios), 3),
        "ratio_spread": [min(ratios), max(ratios)],
        "raw_median": round(median([p["raw"] for p in pairs]), 2),
        "pipeline_median": round(median([p["pipeline"] for p in pairs]), 2),
    }
    cpu_ratios = [p["cpu_ratio"] for p in pairs if p.get("cpu_ratio")]
    if cpu_ratios:
        out["cpu_ratio_median"] = round(median(cpu_ratios), 3)
        out["cpu_ratio_spread"] = [min(cpu_ratios), max(cpu_ratios)]
    references = [p["raw_fw_defaults"] for p in pairs if "raw_fw_defaults" in p]
    if references:
        out["raw_fw_defaults_median"] = round(median(references), 2)
        out["raw_fw_defaults_spread"] = [min(references), max(references)]
    return out


def write_results(
    path: Path,
    machine: dict[str, Any],
    mode: str,
    outcomes: dict[str, Outcome],
    errors: dict[str, str],
    *,
    add_rounds: bool = False,
) -> None:
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(path.read_text())
    before = {"service_timing": "fast", "commit": "unknown", **previous.get("machine", {})}  # older files
    same_kind = [previous.get("mode"), *(before.get(k) for k in COMPARABLE)]
    sections = previous.get("sections", {}) if same_kind == [mode, *(machine[k] for k in COMPARABLE)] else {}
    same_sizes = previous.get("machine", {}).get("sizes") == json.loads(json.dumps(machine.get("sizes")))  # tuples
    for name, outcome in outcomes.items():
        if "repeats" in outcome.data:
            earlier = sections.get(name, {}).get("repeats", []) if add_rounds and same_sizes else []
            if add_rounds and not earlier:
                print(f"{name}: no earlier rounds of the same kind and size in {path}: starting afresh")
            outcome.data["repeats"] = [*earlier, *outcome.data["repeats"]]
            outcome.data["all_rounds"] = every = all_rounds(outcome.data["repeats"])
            line = (
                f"all {every['rounds']} round(s) in this file: pipeline/raw wall median {every['ratio_median']:.3f}, "
                f"spread {every['ratio_spread'][0]:.3f}-{every['ratio_spread'][1]:.3f}; own CPU-s ratio median "
                f"{every.get('cpu_ratio_median')} spread {every.get('cpu_ratio_spread')}; medians pipeline "
                f"{every['pipeline_median']:.1f}s, raw {every['raw_median']:.1f}s"
                + (
                    f", raw fw defaults {every['raw_fw_defaults_median']:.1f}s"
                    if "raw_fw_defaults_median" in every
                    else ""
                )
            )
            outcome.summary.append(line)
            print(f"{name}: {line}")
    for name, outcome in outcomes.items():
        sections[name] = {
            "rows": [r.as_dict() for r in outcome.rows],
            "summary": outcome.summary,
            **outcome.data,
        }
    for name, error in errors.items():
        sections[name] = {"error": error}
    result = {"machine": machine, "mode": mode, "sections": {k: sections[k] for k in SECTIONS if k in sections}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        metavar="NAME",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every size about 10x smaller (3 calls of 1 min, 2-min calls, 20 small files, "
        "memory after 3 and 30 tasks): proves the script works, not the numbers",
    )
    parser.add_argument(
        "--decoding",
        choices=("plain", "product"),
        default="product",
        help="product (default): the product's defaults on both sides, i.e. the raw loop also gets "
        "condition_on_previous_text=False, hallucination_silence_threshold=2, word_timestamps=True (the product "
        "forces word timings on when the threshold is set); plain: faster-whisper's defaults on both sides "
        "(beam 5 and VAD on still), i.e. the pipeline runs with WHISPER_CONDITION_ON_PREVIOUS_TEXT=true and "
        "WHISPER_HALLUCINATION_SILENCE_THRESHOLD=0 (the setup of the first figures, not what ships)",
    )
    parser.add_argument(
        "--service-timing",
        choices=("product", "fast"),
        default="product",
        help="product (default): the services' shipped timing (WATCH_SETTLE_SECONDS 5, WATCH_POLL_SECONDS 30, "
        "CLEANUP_INTERVAL_SECONDS 60, DISPATCH_INTERVAL_SECONDS 2); fast: settle 0.5, poll 1, cleanup 1 (the "
        "setup of the first figures, not what ships)",
    )
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="overhead with --decoding product: skip the raw run with faster-whisper's own defaults",
    )
    parser.add_argument(
        "--first",
        choices=("raw", "pipeline"),
        default="raw",
        help="overhead and small_files: which side runs first in the first round (then it alternates)",
    )
    parser.add_argument("--model", default="tiny.en", help="WHISPER_MODEL for both sides (default tiny.en)")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads of the model on both sides (default: every core, %(default)s)",
    )
    parser.add_argument("--calls", type=int, help="overhead: number of calls (default 3)")
    parser.add_argument("--call-minutes", type=float, help="overhead: minutes per call (default 10; quick 1)")
    parser.add_argument("--batched-minutes", type=float, help="batched: minutes of the call (default 20; quick 2)")
    parser.add_argument("--small-files", type=int, help="small_files: number of files (default 200; quick 20)")
    parser.add_argument(
        "--memory-tasks",
        type=int,
        nargs=2,
        metavar=("EARLY", "TOTAL"),
        help="memory: measure after EARLY and after TOTAL tasks (default 10 300; quick 3 30)",
    )
    parser.add_argument("--resume-minutes", type=float, help="resume: minutes of the call (default 20; quick 2)")
    parser.add_argument(
        "--resume-fraction",
        type=float,
        help="resume: the time limit as a fraction of the unlimited attempt (default 0.4)",
    )
    parser.add_argument(
        "--resume-backoff",
        type=float,
        help="resume: RETRY_BACKOFF_SECONDS for the limited run (default: unset, the product's 30; the first "
        "figures used 0)",
    )
    parser.add_argument(
        "--resume-retries",
        type=int,
        help="resume: TASK_MAX_RETRIES for the limited run (default: unset, the product's 3; the first figures used 6)",
    )
    parser.add_argument(
        "--no-batched-pipeline",
        dest="batched_pipeline",
        action="store_false",
        help="batched: skip the pipeline run with WHISPER_BATCH_SIZE=8",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="overhead and small_files: run the raw/pipeline pair this many times, alternating which goes first, "
        "and report each side's median (default 1; 3 is steadier on a VM whose speed drifts)",
    )
    parser.add_argument(
        "--add-rounds",
        action="store_true",
        help="overhead and small_files: keep the rounds already in the results file (same settings and sizes) and "
        "add this run's, so that several short invocations make one set of paired rounds (medians and spread over "
        "all of them are reported)",
    )
    parser.add_argument(
        "--section-timeout",
        type=float,
        help="seconds one section may take before it is stopped (default 3600; quick 900)",
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        help="an admin connection; a database transcriber_bench_pvr_<pid>_<n> is created per pipeline run and "
        "dropped after it (default %(default)s)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/7",
        help="broker for the pipeline; this database is FLUSHED before each run (default %(default)s)",
    )
    parser.add_argument(
        "--audio-cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "transcriber-bench-audio",
        help="generated audio, kept between runs (default %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="results file (default bench/results/pipeline_vs_raw.<decoding>.json; quick: "
        "pipeline_vs_raw.<decoding>.quick.json)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each timed run wait, at most this long, until other work has used under 10%% of the machine "
        "for 10 s (default 0: start at once); for a machine shared with other work",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (service logs, transcripts)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.threads < 1:
        parser.error("--repeat and --threads must be at least 1")
    return args


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else FULL
    pick: dict[str, Any] = {
        "calls": args.calls,
        "call_seconds": args.call_minutes and args.call_minutes * 60,
        "batched_seconds": args.batched_minutes and args.batched_minutes * 60,
        "small_files": args.small_files,
        "memory_tasks": tuple(args.memory_tasks) if args.memory_tasks else None,
        "resume_seconds": args.resume_minutes and args.resume_minutes * 60,
        "resume_fraction": args.resume_fraction,
    }
    return Sizes(**{**base.__dict__, **{k: v for k, v in pick.items() if v}})


@contextlib.contextmanager
def work_folder(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="pipeline-vs-raw-"))
    try:
        yield work
    finally:
        if keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run_sections(bench: Bench, names: list[str]) -> tuple[dict[str, Outcome], dict[str, str]]:
    outcomes: dict[str, Outcome] = {}
    errors: dict[str, str] = {}
    for name in names:
        print(f"== {name} ...", flush=True)
        began = time.monotonic()
        load = [round(x, 2) for x in os.getloadavg()]
        bench.wait_pending = True
        try:
            outcome = RUNNERS[name](bench, bench.deadline())
        except Exception as exc:  # SectionTimeout too
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"== {name} FAILED after {time.monotonic() - began:.0f}s: {errors[name][:4000]}", flush=True)
            continue
        except KeyboardInterrupt:
            errors[name] = "interrupted (Ctrl-C or SIGTERM); later sections not run"
            print(f"== {name} interrupted", flush=True)
            break
        finally:
            _kill_all()  # nothing of a section outlives it
        outcome.summary += cpu_summary(outcome.rows)
        outcome.data |= {
            "seconds": round(time.monotonic() - began, 1),
            "load_average_before": load,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        outcomes[name] = outcome
        print("\n".join([HEADER, *format_rows(outcome.rows), *outcome.summary]), flush=True)
    return outcomes, errors


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    atexit.register(_kill_all)
    preflight(args)
    from transcriber.model_store import resolve_model

    model_path = resolve_model(args.model, None)
    env, raw_options = decoding(args.decoding, args.threads, args.model)
    names = [name for name in SECTIONS if not args.only or name in args.only]
    machine = machine_info(args, model_path)
    with work_folder(args.keep) as work:
        bench = Bench(args, sizes_from(args), work, Audio(args.audio_cache), model_path, env, raw_options)
        machine["sizes"] = bench.sizes.__dict__
        outcomes, errors = run_sections(bench, names)
    print_report(machine, outcomes, errors)
    mode = "quick" if args.quick else "full"
    default = BENCH / "results" / f"pipeline_vs_raw.{args.decoding}{'.quick' if args.quick else ''}.json"
    write_results(args.output or default, machine, mode, outcomes, errors, add_rounds=args.add_rounds)
    if any(e.startswith("interrupted") for e in errors.values()):
        return 130
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
