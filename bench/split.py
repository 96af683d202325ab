"""Benchmark: long calls cut into pieces and fanned out over workers (issue 15, items 2 and 6), end to end.

    .venv/bin/python bench/split.py --all --c-unsplit             # a-e (d at --scale 0.2): ~26 min on 2 cores
    .venv/bin/python bench/split.py --one-hour                    # a only (~5.5 min)
    .venv/bin/python bench/split.py --throughput --scale 1        # d at full size: 7.5 h of audio, ~45 min
    .venv/bin/python bench/split.py --all --smoke                 # every scenario on a few minutes of audio (~3 min)
    .venv/bin/python bench/split.py --all --prepare               # only write the audio (~6.6 h of it; ~10 min)
    .venv/bin/python bench/split.py --all --rescore /tmp/bench-split-XXXX   # judge a kept (--keep) run again

Everything runs through the real pipeline, started as an operator starts it: ``transcriber worker`` (Celery's
default pool on Linux, prefork, with ``--concurrency=N``), ``transcriber beat`` and ``transcriber watch``, on a fresh
Postgres database per run (``transcriber_bench_split_<pid>_<n>``, migrated with ``migrate.upgrade_to_head``, dropped
afterwards) and Redis database 15 (flushed first; the bench refuses if another client uses it). The processes get
no environment but PATH/HOME/LANG, the URLs and folders, ``WHISPER_MODEL`` (``--model``, default tiny.en, the
offline package), ``DIARIZE=off`` and the layout's settings below; everything else is the product's default
(TASK_TIMEOUT_SECONDS 7200, WATCH_SETTLE_SECONDS 5, DISPATCH_INTERVAL_SECONDS 2, ...). The first file is dropped
once every worker logged ``ready.`` and every model process logged ``model ... loaded`` (warm), and once the
machine is idle: no pytest running and ``psutil.cpu_percent`` over 3 s under 15 % (waited for, at most
``--idle-wait`` s; the result says whether it was). A call is dropped the way a recorder's upload finishes: copied
into a staging folder next to WATCH_DIR, then renamed into it. Time to completed = ``recordings.finished_at``
minus the moment of the rename (the same clock).

Layouts (``--concurrency`` = model processes, each with its own model):
  unsplit_1x2  SPLIT_MIN_SECONDS=0, ``--concurrency=1``, WHISPER_CPU_THREADS=2   (one worker, the call whole)
  split_2x1    ``--concurrency=2``, WHISPER_CPU_THREADS=1, SPLIT_MIN/TARGET as shipped (600/300 s)
  split_4x1    ``--concurrency=4``, WHISPER_CPU_THREADS=1 (4 model processes on 2 cores), split as shipped
  batched      ``--concurrency=1``, WHISPER_CPU_THREADS=2, WHISPER_BATCH_SIZE=8, split as split_2x1 (d only)

Scenarios:
  a --one-hour    one call of ``--a-minutes`` (60) in unsplit_1x2, split_2x1 and split_4x1, one after the other
                  in one run: time to completed, speedup against unsplit_1x2 (target >= 1.7x for split_2x1),
                  CPU-seconds per audio-hour of the worker and model processes (target: split <= 5 % more than
                  unsplit), WER against the script and against the unsplit transcript (target: split <= 0.5 pp
                  worse than unsplit), seams: for each cut (the pieces' ``attempts.audio_start_seconds``) the two
                  sentences before it and the two after, each missing (``speech.sentences_missing``) or doubled
                  (a keyword of its own twice in the segments overlapping it, +-1 s); the unsplit transcript at
                  the same times is the control.
  b --memory      one call of ``--b-hours`` (3), split_2x1: peak resident memory of each model process (VmHWM
                  from /proc, and psutil's RSS every 0.5 s; target < 1 GiB). For comparison the whole file
                  decoded at once by ``transcriber.audio.decode`` in a fresh process (ru_maxrss).
  c --time-limit  one call of ``--c-minutes`` (68), split_2x1, under a TASK_TIMEOUT_SECONDS that one unsplit attempt
                  cannot meet: ``--c-fraction`` (0.5) x the time unsplit_1x2 would need (its seconds per audio
                  second in a, from this run or the results file), or ``--c-timeout``. Completed?, retries (target
                  0), the longest attempt as a share of the limit. ``--c-unsplit`` also runs unsplit_1x2 under
                  the same limit until its first attempt ends (a timeout is expected).
  e --split-cost  a's call in unsplit_1x1 (SPLIT_MIN_SECONDS=0, ``--concurrency=1``, WHISPER_CPU_THREADS=1) and
                  split_1x1 (the same with the shipped split): what cutting costs by itself with the threads per
                  model process held equal (a's comparison also changes 2 threads for 1): CPU, wall, WER, seams.
  d --throughput  20 calls of 5-40 min x ``--scale`` (default 0.2: 1-8 min; lengths seeded), all dropped at once,
                  in unsplit_1x2, split_2x1 and batched: audio-hours per hour, CPU per audio-hour, WER. With a
                  scale below 1 the split thresholds are scaled too (0.2: SPLIT_MIN_SECONDS=120,
                  SPLIT_TARGET_SECONDS=60), so calls are cut in as many pieces as at full size; --shipped-split
                  keeps 600/300 (then no call under 10 minutes is cut).

Calls are espeak-ng speech (tests/speech.py) of 26 sentences: the 20 KEYED_SENTENCES (two words of their own
each) and the 6 SENTENCES (one word of their own each), every sentence once per round in a seeded order (none
within 8 sentences of its last time), each at a seeded speed (140-175 words/min) followed by a pause of
0.4-2.5 s; written once as .m4a (AAC) under ``--audio-cache`` with the script beside it (JSON). WER = word-level
Levenshtein distance (``completeness.edits`` on ``completeness.words``) over the whole call / words of the
reference; the hypothesis is ``recordings.transcript``.

CPU: every 0.5 s the bench walks the process tree of each service (psutil) and keeps each pid's last
user+system time; the figure is the sum over the worker and model processes of what they used after the drop
(model load and warm-up before it are left out). "Other CPU" is what the rest of the machine used meanwhile
(``pipeline_vs_raw.CpuMeter``: busy CPU minus this bench and its services minus Postgres and Redis); above 5 %
of the machine the run is marked "not idle".

The code measured is a snapshot of the checkout's ``src/`` and ``alembic/`` copied when the bench starts, which
the bench and every service import through PYTHONPATH (ahead of the editable install), so edits made to the
checkout meanwhile do not reach a run; its commit and any uncommitted files are in the results (``--live-code``:
the checkout as it is when each service starts).

Writes bench/results/split.json (``--smoke``: split.smoke.json): machine facts, settings, every figure of every
run (transcripts left out; attempts and cuts kept); scenarios not run this time are kept from the file. Prints a
markdown table per scenario. Exit code 1 if a run failed, 130 if interrupted; every process started is stopped
and every database created is dropped either way.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
sys.path.insert(0, str(BENCH))

import pipeline_vs_raw  # noqa: E402
from completeness import edits, words  # noqa: E402
from pipeline_vs_raw import (  # noqa: E402
    LOADED,
    READY,
    TRANSCRIBER,
    CpuMeter,
    _admin_sql,
    _flush_redis,
    _kill_all,
    _kill_group,
    _on_sigterm,
    start_process,
)

from speech import KEYED_SENTENCES, SENTENCES, Said, sentences_missing, silence, speak, write_audio  # noqa: E402

SAMPLE_RATE = 16000
AUDIO_VERSION = "v1"  # part of each cached file's name: change it with the generator
SENTENCE_KEYS = ("quarterly", "printer", "weekend", "technician", "pickup", "insurance")  # one word of its own each
SCRIPT = [*KEYED_SENTENCES, *zip(SENTENCE_KEYS, SENTENCES, strict=True)]
SPEEDS = (140, 150, 160, 175)
DB_PREFIX = "transcriber_bench_split_"
IDLE_PERCENT = 15.0
SAMPLE_SECONDS = 0.5
SCENARIOS = ("a", "b", "c", "d", "e")
MIB = 2**20
BANNER = re.compile(r"concurrency: (\d+) \((\w+)\)")  # Celery's start banner: ".> concurrency: 2 (prefork)"


# ---------------------------------------------------------------- the calls


@dataclass
class Call:
    path: Path
    seconds: float
    said: list[Said]
    keys: list[str]  # "a|b" (or "a") per sentence of ``said``

    def truth(self) -> list[str]:
        return words(" ".join(s.text for s in self.said))


_VOICED: dict[tuple[str, int], np.ndarray] = {}


def _voiced(text: str, speed: int) -> np.ndarray:
    if (text, speed) not in _VOICED:
        _VOICED[(text, speed)] = speak(text, speed=speed)
    return _VOICED[(text, speed)]


def _next_round(rng: random.Random, recent: Sequence[str]) -> list[tuple[str, str]]:
    """Every sentence once, in a new order; none of the last 8 said comes back in the first 8."""
    shuffled = rng.sample(SCRIPT, len(SCRIPT))
    fresh = [s for s in shuffled if s[0] not in recent]
    later = fresh[8:] + [s for s in shuffled if s[0] in recent]
    return fresh[:8] + rng.sample(later, len(later))


def script_call(seconds: float, seed: int) -> tuple[np.ndarray, list[Said], list[str]]:
    """At least ``seconds`` of the 26 sentences, seeded: the audio, where each sentence is, and its keywords."""
    rng = random.Random(seed)
    parts: list[np.ndarray] = []
    said: list[Said] = []
    keys: list[str] = []
    order: list[tuple[str, str]] = []
    samples = 0
    while samples < seconds * SAMPLE_RATE:
        if not order:
            order = _next_round(rng, keys[-8:])
        key, text = order.pop(0)
        voiced = _voiced(text, rng.choice(SPEEDS))
        pause = silence(rng.uniform(0.4, 2.5))
        said.append(Said(round(samples / SAMPLE_RATE, 3), round((samples + len(voiced)) / SAMPLE_RATE, 3), text))
        keys.append(key)
        parts += [voiced, pause]
        samples += len(voiced) + len(pause)
    return np.concatenate(parts), said, keys


class AudioCache:
    """Generated calls, kept between runs under names that say what they hold."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def load(self, file_name: str) -> Call:
        """A call written before, by its file name."""
        data = json.loads((self.folder / file_name).with_suffix(".json").read_text())
        return Call(self.folder / file_name, data["seconds"], [Said(*s) for s in data["said"]], data["keys"])

    def call(self, name: str, seconds: float, seed: int) -> Call:
        stem = f"split_{AUDIO_VERSION}_{name}_{seconds:g}s_seed{seed}"
        audio, meta = self.folder / f"{stem}.m4a", self.folder / f"{stem}.json"
        if not (audio.is_file() and meta.is_file()):
            print(f"   writing {audio.name} ({seconds / 60:.0f} min of speech) ...", flush=True)
            samples, said, keys = script_call(seconds, seed)
            partial = audio.with_name(f"{stem}.{os.getpid()}.tmp.m4a")
            write_audio(partial, samples)
            length = len(samples) / SAMPLE_RATE
            del samples
            meta.write_text(json.dumps({"seconds": length, "said": [[s.start, s.end, s.text] for s in said], "keys": keys}))  # fmt: skip
            os.replace(partial, audio)
        return self.load(audio.name)


# ---------------------------------------------------------------- the machine


def others_running() -> list[str]:
    """Processes that would load the machine under a timed run: test runs (pytest)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        argv = proc.info["cmdline"] or []
        # pytest itself (``pytest``, ``python -m pytest``), not a process that only has "pytest" in a path
        if proc.info["pid"] != os.getpid() and any(Path(a).name in ("pytest", "py.test") for a in argv):
            found.append(f"{proc.info['pid']} {' '.join(argv)[:80]}")
    return found


def wait_idle(what: str, max_wait: float) -> dict[str, Any]:
    """Wait until no pytest runs and the machine's CPU over 3 s is under 15 % (at most ``max_wait`` s)."""
    began = time.monotonic()
    said = -60.0
    while True:
        waited = time.monotonic() - began
        busy = others_running()
        percent = None if busy else psutil.cpu_percent(interval=3)
        if percent is not None and percent < IDLE_PERCENT:
            return {"idle": True, "cpu_percent_3s": percent, "waited_seconds": round(waited, 1)}
        if waited >= max_wait:
            return {"idle": False, "cpu_percent_3s": percent, "pytest": busy[:3], "waited_seconds": round(waited, 1)}
        if waited - said >= 60:
            said = waited
            why = f"pytest running ({busy[0]})" if busy else f"CPU {percent:.0f} %"
            print(f"   waiting for an idle machine before {what}: {why} ({waited:.0f} s)", flush=True)
        time.sleep(30 if busy else 5)


def machine_facts(args: argparse.Namespace) -> dict[str, Any]:
    """What the figures were measured on."""
    from transcriber.model_store import resolve_model

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)  # fmt: skip
    facts: dict[str, Any] = {
        "cpu_model": next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        **{name: _version(name) for name in ("faster-whisper", "ctranslate2", "celery", "kombu", "sqlalchemy", "av")},
        "commit": commit.stdout.strip() or None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "model_path": resolve_model(args.model, None),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(Exception):
        facts["postgres"] = _admin_sql(args.postgres_url, "SHOW server_version")[0][0]
    with contextlib.suppress(Exception):
        import redis

        facts["redis"] = redis.Redis.from_url(args.redis_url).info("server")["redis_version"]
    return facts


def _version(name: str) -> str | None:
    try:
        return version(name)
    except Exception:  # not installed: the figure is optional
        return None


def snapshot_code(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A copy of the checkout's ``src/`` and ``alembic/`` that this bench and every process it starts import.

    Through PYTHONPATH, which comes before the editable install's finder: the code measured stays the same for
    the whole run even while the checkout is being edited. Its commit and uncommitted changes are recorded.
    """

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True).stdout

    facts: dict[str, Any] = {"head": git("rev-parse", "--short", "HEAD").strip()}
    changed = [line[3:] for line in git("status", "--porcelain", "--", "src", "alembic").splitlines()]
    facts["uncommitted_in_src"] = changed
    if changed:
        import hashlib

        facts["diff_sha256"] = hashlib.sha256(git("diff", "HEAD", "--", "src", "alembic").encode()).hexdigest()[:16]
    if args.live_code:
        return facts | {"snapshot": None}
    code = work / "code"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("src", "alembic"):
        shutil.copytree(ROOT / part, code / part, ignore=skip)
    args.pythonpath = str(code / "src")
    sys.path.insert(0, args.pythonpath)
    return facts | {"snapshot": args.pythonpath}


# ---------------------------------------------------------------- CPU and memory of the services


def _kind(cmdline: list[str]) -> str:
    if any("transcriber.model_process" in part for part in cmdline):
        return "model"
    for kind in ("worker", "beat", "watch", "run"):
        if kind in cmdline:
            return kind
    return "other"


def _hwm_mib(pid: int) -> float | None:
    """The kernel's peak resident size of a process (VmHWM), in MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


class TreeSampler(threading.Thread):
    """Every 0.5 s: each process under ``roots``, its kind, its last CPU time, resident memory and peak."""

    def __init__(self, roots: list[int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.procs: dict[int, psutil.Process] = {}
        self.kinds: dict[int, str] = {}
        self.cpu: dict[int, float] = {}
        self.baseline: dict[int, float] = {}
        self.rss: dict[int, float] = {}
        self.first_rss: dict[int, float] = {}
        self.hwm: dict[int, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.pytest_seen: list[str] = []  # test runs that started meanwhile (looked for every 5 s)

    def sample(self) -> None:
        with self.lock:
            for root in self.roots:
                try:
                    top = psutil.Process(root)
                    tree = [top, *top.children(recursive=True)]
                except psutil.Error:
                    continue
                for proc in tree:
                    self._one(self.procs.setdefault(proc.pid, proc))

    def _one(self, proc: psutil.Process) -> None:
        try:
            if proc.pid not in self.kinds:
                self.kinds[proc.pid] = _kind(proc.cmdline())
            times = proc.cpu_times()
            rss = proc.memory_info().rss / MIB
        except psutil.Error:
            return
        self.cpu[proc.pid] = times.user + times.system
        self.first_rss.setdefault(proc.pid, rss)
        self.rss[proc.pid] = max(self.rss.get(proc.pid, 0.0), rss)
        hwm = _hwm_mib(proc.pid)
        if hwm is not None:
            self.hwm[proc.pid] = max(self.hwm.get(proc.pid, 0.0), hwm)

    def mark(self) -> None:
        """From now on: CPU is counted from this moment."""
        self.sample()
        with self.lock:
            self.baseline = dict(self.cpu)

    def run(self) -> None:
        ticks = 0
        while not self.done.wait(SAMPLE_SECONDS):
            self.sample()
            ticks += 1
            if ticks % 10 == 0 and not self.pytest_seen:
                self.pytest_seen = others_running()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
        self.sample()

    def cpu_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, seconds in self.cpu.items():
            kind = self.kinds.get(pid, "other")
            out[kind] = round(out.get(kind, 0.0) + seconds - self.baseline.get(pid, 0.0), 2)
        return out

    def memory(self, kind: str) -> list[dict[str, Any]]:
        return [
            {"pid": pid, "peak_rss_mib_sampled": round(self.rss.get(pid, 0.0), 1),
             "vm_hwm_mib": round(self.hwm[pid], 1) if pid in self.hwm else None,
             "rss_mib_at_start": round(self.first_rss.get(pid, 0.0), 1)}
            for pid in sorted(self.kinds) if self.kinds[pid] == kind
        ]  # fmt: skip


# ---------------------------------------------------------------- the services


@dataclass
class Layout:
    key: str
    label: str
    concurrency: int
    env: dict[str, str]


@dataclass
class Seg:
    start: float
    end: float
    text: str


@dataclass
class Collected:
    recordings: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    segments: dict[str, list[Seg]]  # by file name


class Services:
    """worker(s) + beat + watch on a fresh Postgres database, or ``transcriber run`` (embedded) in a fresh folder.

    A context manager: every process is stopped and the database dropped on the way out, whatever happened.
    """

    runs = 0

    def __init__(self, args: argparse.Namespace, work: Path, label: str, env: dict[str, str], *,
                 kind: str = "postgres", concurrency: int = 1, worker_args: Sequence[str] | None = None) -> None:  # fmt: skip
        Services.runs += 1
        self.args, self.kind, self.label, self.concurrency = args, kind, label, concurrency
        self.folder = work / f"{Services.runs:02d}-{label}"
        self.inbox, self.staging = self.folder / "inbox", self.folder / "staging"
        self.database = f"{DB_PREFIX}{os.getpid()}_{Services.runs}"
        default_args = [f"--concurrency={concurrency}"] if concurrency > 0 else []  # 0: the product's default
        self.worker_args = list(worker_args) if worker_args is not None else default_args
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(self.folder)),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1",
            "WHISPER_MODEL": args.model,
            "DIARIZE": "off",
            **env,
        }
        if getattr(args, "pythonpath", None):  # the snapshot of the code (``snapshot_code``)
            self.env["PYTHONPATH"] = args.pythonpath
        if kind == "postgres":
            self.url = args.postgres_url.rsplit("/", 1)[0] + "/" + self.database
            self.env |= {"DATABASE_URL": self.url, "CELERY_BROKER_URL": args.redis_url, "WATCH_DIR": str(self.inbox),
                         "OUTPUT_DIR": str(self.folder / "transcripts"), "DATA_DIR": str(self.folder / "data")}  # fmt: skip
        else:  # the embedded default: nothing but the working folder
            self.url = f"sqlite:///{(self.folder / 'data' / 'transcriber.db').as_posix()}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.engine: Any = None
        self.warm_seconds: float | None = None  # from ready to every model loaded; None: not within --warm-timeout
        self.pool: str | None = None
        self.loaded_before_drop = 0

    def settings(self) -> dict[str, str]:
        """What this run set (paths and URLs left out)."""
        skip = {"PATH", "HOME", "LANG", "PYTHONUNBUFFERED", "PYTHONPATH", "DATABASE_URL", "CELERY_BROKER_URL", "WATCH_DIR",
                "OUTPUT_DIR", "DATA_DIR"}  # fmt: skip
        return {k: v for k, v in sorted(self.env.items()) if k not in skip}

    def __enter__(self) -> Services:
        from transcriber.db import make_engine
        from transcriber.migrate import upgrade_to_head

        for folder in (self.inbox, self.staging):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            if self.kind == "postgres":
                _admin_sql(self.args.postgres_url, f'CREATE DATABASE "{self.database}"')
                upgrade_to_head(self.url)
                _flush_redis(self.args.redis_url)
                self._start("worker", [*self.worker_args])
                self._start("beat", [f"--schedule={self.folder / 'beat-schedule'}"])
                self._start("watch", [])
            else:
                self._start("run", [])
            self._wait_ready()
            self.engine = make_engine(self.url)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            _kill_group(proc, grace=20.0, term=False)
        if self.engine is not None:
            self.engine.dispose()
        if self.kind == "postgres":
            with contextlib.suppress(Exception):
                _admin_sql(self.args.postgres_url, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _start(self, command: str, extra: list[str]) -> None:
        self.procs[command] = start_process(
            [TRANSCRIBER, command, *extra], self.folder / f"{command}.log", self.env, self.folder
        )

    def log_path(self, name: str) -> Path:
        if self.kind == "embedded" and name in ("worker", "beat"):
            return self.folder / "data" / "logs" / f"{name}.log"
        return self.folder / f"{name}.log"

    def log(self, name: str) -> str:
        try:
            return self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        """Every service said it is up, then every model process loaded its model (at most ``--warm-timeout``)."""
        ready = {"worker": READY["worker"], "beat": READY["beat"]}
        ready |= {"watch": READY["watch"]} if self.kind == "postgres" else {"run": "drop recordings into"}
        deadline = time.monotonic() + 180
        while any(line not in self.log(name) for name, line in ready.items()):
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: services not up within 180 s:\n{self.tails()}")
            time.sleep(0.2)
        found = BANNER.search(self.log("worker"))
        self.pool = found.group(2) if found else None
        if self.concurrency <= 0:  # the product's default: what the worker says it runs
            self.concurrency = int(found.group(1)) if found else 1
        began = time.monotonic()
        while len(LOADED.findall(self.log("worker"))) < self.concurrency:
            self.check_alive()
            if time.monotonic() - began > self.args.warm_timeout:
                print(f"   {self.label}: only {len(LOADED.findall(self.log('worker')))} of {self.concurrency} "
                      f"models loaded after {self.args.warm_timeout:.0f} s; going on", flush=True)  # fmt: skip
                return
            time.sleep(0.2)
        self.warm_seconds = round(time.monotonic() - began, 2)

    def tails(self) -> str:
        names = ["worker", "beat", *self.procs]
        return "\n".join(f"--- {n}\n{self.log(n)[-2500:]}" for n in dict.fromkeys(names))

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{self.label}: {name} exited with {proc.returncode}:\n{self.tails()}")

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs.values()]

    def stage(self, calls: Sequence[Call], names: Sequence[str] | None = None) -> list[Path]:
        """Copy the calls next to WATCH_DIR (same file system), ready to be renamed in."""
        staged = []
        for i, call in enumerate(calls):
            target = self.staging / (names[i] if names else call.path.name)
            shutil.copyfile(call.path, target)
            staged.append(target)
        return staged

    def drop(self, staged: Sequence[Path]) -> float:
        """Rename the staged files into WATCH_DIR; the clock's start (``time.time()`` just before)."""
        self.loaded_before_drop = len(LOADED.findall(self.log("worker")))
        began = time.time()
        for path in staged:
            os.rename(path, self.inbox / path.name)
        return began

    def counts(self) -> dict[str, int]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return dict(conn.execute(text("SELECT status, count(*) FROM recordings GROUP BY status")).all())  # type: ignore[arg-type]

    def wait_settled(self, count: int, timeout: float, *, until: Callable[[], bool] | None = None) -> None:
        """Until ``count`` recordings are completed or failed (or ``until()`` holds)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if counts.get("completed", 0) + counts.get("failed", 0) >= count or (until and until()):
                return
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: not settled within {timeout:.0f} s ({counts})\n{self.tails()}")
            time.sleep(0.25)

    def collect(self, began: float) -> Collected:
        """Recordings, attempts and segments, times in seconds after ``began`` (the drop)."""
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        from transcriber.tables import Attempt, Recording
        from transcriber.tables import Segment as SegmentRow

        def after(moment: datetime | None) -> float | None:
            return round(moment.timestamp() - began, 3) if moment else None

        with Session(self.engine) as session:
            recs = session.execute(select(Recording)).scalars().all()
            names = {r.id: r.file_name for r in recs}
            recordings = [
                {"file_name": r.file_name, "status": r.status, "retry_count": r.retry_count, "error": r.error_message,
                 "duration_seconds": r.duration_seconds, "registered_after": after(r.created_at),
                 "started_after": after(r.started_at), "completed_after": after(r.finished_at),
                 "transcript": r.transcript or ""}
                for r in recs
            ]  # fmt: skip
            attempts = [
                {"file_name": names.get(a.recording_id), "attempt": a.attempt, "piece": a.piece, "outcome": a.outcome,
                 "worker": a.worker, "started_after": after(a.started_at), "finished_after": after(a.finished_at),
                 "seconds": round((a.finished_at - a.started_at).total_seconds(), 2) if a.finished_at else None,
                 "audio_start": a.audio_start_seconds, "audio_end": a.audio_end_seconds,
                 "time_limit": a.time_limit_seconds, "error": a.error_message}
                for a in session.execute(select(Attempt).order_by(Attempt.started_at)).scalars()
            ]  # fmt: skip
            segments: dict[str, list[Seg]] = {name: [] for name in names.values()}
            rows = session.execute(select(SegmentRow.recording_id, SegmentRow.start, SegmentRow.end, SegmentRow.text)
                                   .order_by(SegmentRow.recording_id, SegmentRow.start))  # fmt: skip
            for rid, start, end, text_ in rows:
                segments[names[rid]].append(Seg(start, end, text_))
        return Collected(recordings, attempts, segments)


# ---------------------------------------------------------------- one timed run


@dataclass
class Run:
    layout: str
    label: str
    settings: dict[str, str]
    concurrency: int
    idle_before: dict[str, Any]
    wall_seconds: float
    audio_seconds: float
    cpu: dict[str, float]
    machine_cpu: dict[str, float]
    model_memory: list[dict[str, Any]]
    worker_memory: list[dict[str, Any]]
    warm_seconds: float | None
    collected: Collected
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def worker_model_cpu(self) -> float:
        return round(self.cpu.get("worker", 0.0) + self.cpu.get("model", 0.0), 2)

    @property
    def idle_during(self) -> bool:
        capacity = self.machine_cpu["wall"] * (os.cpu_count() or 1)
        quiet = self.machine_cpu["others"] + self.machine_cpu["steal"] <= 0.05 * capacity
        return quiet and not self.extra.get("pytest_seen_during")

    def summary(self) -> dict[str, Any]:
        """Everything but the transcripts and segments."""
        recordings = [{k: v for k, v in r.items() if k != "transcript"} for r in self.collected.recordings]
        return {
            "layout": self.layout, "label": self.label, "settings": self.settings, "concurrency": self.concurrency,
            "idle_before": self.idle_before, "idle_during": self.idle_during, "wall_seconds": self.wall_seconds,
            "audio_seconds": round(self.audio_seconds, 1), "cpu_seconds_by_process": self.cpu,
            "worker_model_cpu_seconds": self.worker_model_cpu, "machine_cpu_seconds": self.machine_cpu,
            "model_memory": self.model_memory, "worker_memory": self.worker_memory,
            "models_warm_after_ready_seconds": self.warm_seconds, "recordings": recordings,
            "attempts": self.collected.attempts, **self.extra,
        }  # fmt: skip


class Bench:
    """What every scenario shares: arguments, the work folder, the audio, the results so far."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.audio = AudioCache(args.audio_cache)
        self.results: dict[str, Any] = {}

    def run(self, layout: Layout, calls: Sequence[Call], *, timeout: float | None = None,
            until: Callable[[Services], bool] | None = None, kind: str = "postgres") -> Run:  # fmt: skip
        """``once``, and once more (``--rerun-busy``) when other work loaded the machine meanwhile."""
        run = self.once(layout, calls, timeout=timeout, until=until, kind=kind)
        if not run.idle_during and self.args.rerun_busy:
            print("   the machine was not idle during that run: once more", flush=True)
            again = self.once(layout, calls, timeout=timeout, until=until, kind=kind)
            again.extra["busy_run_before"] = run.summary()
            run = again
        return run

    def once(self, layout: Layout, calls: Sequence[Call], *, timeout: float | None = None,
             until: Callable[[Services], bool] | None = None, kind: str = "postgres") -> Run:  # fmt: skip
        """Start the services of ``layout``, drop ``calls`` at once, wait until every one settled; the figures."""
        audio = sum(c.seconds for c in calls)
        timeout = timeout or max(300.0, audio * self.args.timeout_factor)
        print(f"-- {layout.key}: {len(calls)} call(s), {audio / 60:.1f} min of audio, {layout.label}", flush=True)
        with Services(self.args, self.work, layout.key, layout.env, kind=kind, concurrency=layout.concurrency) as svc:
            staged = svc.stage(calls)
            idle = wait_idle(layout.key, self.args.idle_wait)
            sampler = TreeSampler(svc.pids())
            sampler.mark()
            sampler.start()
            meter = CpuMeter()
            began = svc.drop(staged)
            try:
                svc.wait_settled(len(calls), timeout, until=(lambda: until(svc)) if until else None)
            finally:
                machine = meter.stop()
                sampler.stop()
            collected = svc.collect(began)
            done = [r["completed_after"] for r in collected.recordings if r["completed_after"] is not None]
            run = Run(
                layout=layout.key, label=layout.label, settings=svc.settings(), concurrency=layout.concurrency,
                idle_before=idle, wall_seconds=round(max(done, default=time.time() - began), 2), audio_seconds=audio,
                cpu=sampler.cpu_by_kind(), machine_cpu=machine, model_memory=sampler.memory("model"),
                worker_memory=sampler.memory("worker"), warm_seconds=svc.warm_seconds, collected=collected,
                extra={"pytest_seen_during": sampler.pytest_seen, "models_loaded_at_drop": svc.loaded_before_drop},
            )  # fmt: skip
        note = "" if run.idle_during and idle["idle"] else "  (NOT IDLE)"
        print(f"   {run.wall_seconds:.1f} s, worker+model CPU {run.worker_model_cpu:.1f} s, other CPU "
              f"{machine['others'] + machine['steal']:.1f} s{note}", flush=True)  # fmt: skip
        return run


# ---------------------------------------------------------------- layouts


def split_env(args: argparse.Namespace, scale: float = 1.0) -> dict[str, str]:
    """The split thresholds of a layout that splits: as shipped unless the command line says otherwise."""
    env = {}
    minimum = args.split_min if args.split_min is not None else (600.0 * scale if scale != 1.0 else None)
    target = args.split_target if args.split_target is not None else (max(30.0, 300.0 * scale) if scale != 1.0 else None)  # fmt: skip
    if minimum is not None:
        env["SPLIT_MIN_SECONDS"] = f"{minimum:g}"
    if target is not None:
        env["SPLIT_TARGET_SECONDS"] = f"{target:g}"
    return env


def layouts(args: argparse.Namespace, scale: float = 1.0) -> dict[str, Layout]:
    split = split_env(args, scale)
    shown = f"SPLIT_MIN_SECONDS={split.get('SPLIT_MIN_SECONDS', '600 (default)')}, SPLIT_TARGET_SECONDS={split.get('SPLIT_TARGET_SECONDS', '300 (default)')}"  # fmt: skip
    return {
        "unsplit_1x2": Layout("unsplit_1x2", "1 model process x 2 threads, unsplit (SPLIT_MIN_SECONDS=0)", 1,
                              {"SPLIT_MIN_SECONDS": "0", "WHISPER_CPU_THREADS": "2"}),
        "split_2x1": Layout("split_2x1", f"2 model processes x 1 thread, split ({shown})", 2,
                            {"WHISPER_CPU_THREADS": "1", **split}),
        "split_4x1": Layout("split_4x1", f"4 model processes x 1 thread on 2 cores, split ({shown})", 4,
                            {"WHISPER_CPU_THREADS": "1", **split}),
        "batched": Layout("batched", f"1 model process x 2 threads, WHISPER_BATCH_SIZE=8, split ({shown})", 1,
                          {"WHISPER_CPU_THREADS": "2", "WHISPER_BATCH_SIZE": "8", **split}),
        "unsplit_1x1": Layout("unsplit_1x1", "1 model process x 1 thread, unsplit (SPLIT_MIN_SECONDS=0)", 1,
                              {"SPLIT_MIN_SECONDS": "0", "WHISPER_CPU_THREADS": "1"}),
        "split_1x1": Layout("split_1x1", f"1 model process x 1 thread, split ({shown})", 1,
                            {"WHISPER_CPU_THREADS": "1", **split}),
    }  # fmt: skip


# ---------------------------------------------------------------- judging transcripts


def wer(reference: list[str], hypothesis: list[str]) -> float:
    return edits(reference, hypothesis) / max(len(reference), 1)


def _near(segments: Sequence[Seg], start: float, end: float, margin: float) -> list[Seg]:
    return [s for s in segments if s.end > start - margin and s.start < end + margin]


def own_words(key: str) -> list[str]:
    """The keywords of a sentence that no other sentence of the script has ("invoice" and "delivery" are in two)."""
    return [k for k in key.split("|") if sum(k in words(text) for _, text in SCRIPT) == 1]


def doubled(call: Call, index: int, segments: Sequence[Seg]) -> bool:
    """A keyword of the sentence's own appears twice in the segments overlapping it (+-1 s)."""
    said = call.said[index]
    heard = words(" ".join(s.text for s in _near(segments, said.start, said.end, 1.0)))
    return max(heard.count(k) for k in own_words(call.keys[index])) >= 2


def missing(call: Call, indices: Sequence[int], segments: Sequence[Seg]) -> list[int]:
    lost = {id(s) for s in sentences_missing([call.said[i] for i in indices], segments)}
    return [i for i in indices if id(call.said[i]) in lost]


def cuts_of(attempts: Sequence[dict[str, Any]]) -> list[float]:
    """Where the call was cut: the start of every piece but the first (from its succeeded attempt)."""
    return sorted({a["audio_start"] for a in attempts if a["piece"] is not None and a["outcome"] == "succeeded"
                   and (a["audio_start"] or 0) > 0})  # fmt: skip


def seams(call: Call, cuts: Sequence[float], segments: Sequence[Seg], control: Sequence[Seg] | None) -> list[dict[str, Any]]:  # fmt: skip
    """At each cut: the two sentences before it and the two after, missing or doubled (and in the control)."""
    out = []
    for cut in cuts:
        before = [i for i, s in enumerate(call.said) if s.start < cut][-2:]
        after = [i for i, s in enumerate(call.said) if s.start >= cut][:2]
        near = before + after
        row: dict[str, Any] = {
            "cut": round(cut, 2),
            "inside_a_sentence": any(s.start < cut < s.end for s in call.said),
            "sentences": len(near),
            "missing": [call.said[i].text for i in missing(call, near, segments)],
            "doubled": [call.said[i].text for i in near if doubled(call, i, segments)],
        }
        if control is not None:
            row["control_missing"] = [call.said[i].text for i in missing(call, near, control)]
            row["control_doubled"] = [call.said[i].text for i in near if doubled(call, i, control)]
        out.append(row)
    return out


def judge(call: Call, run: Run, *, reference: Run | None = None, with_wer: bool = True) -> dict[str, Any]:
    """WER, sentences missing and doubled over the whole call, and at its cuts."""
    name = call.path.name
    [recording] = [r for r in run.collected.recordings if r["file_name"] == name]
    segments = run.collected.segments.get(name, [])
    heard = words(recording["transcript"])
    out: dict[str, Any] = {"file": name, "status": recording["status"], "retry_count": recording["retry_count"],
                           "error": recording["error"], "sentences": len(call.said)}  # fmt: skip
    out["sentences_missing"] = len(sentences_missing(call.said, segments))
    out["sentences_doubled"] = sum(doubled(call, i, segments) for i in range(len(call.said)))
    if with_wer:
        truth = call.truth()
        out |= {"truth_words": len(truth), "edits": edits(truth, heard), "heard_words": len(heard)}
        out["wer"] = round(out["edits"] / max(len(truth), 1), 5)
    mine = [a for a in run.collected.attempts if a["file_name"] == name]
    cuts = cuts_of(mine)
    out |= {"pieces": len(cuts) + 1, "cuts": [round(c, 2) for c in cuts], "attempt_count": len(mine),
            "attempts_not_succeeded": sum(a["outcome"] != "succeeded" for a in mine),
            "longest_attempt_seconds": max((a["seconds"] or 0 for a in mine), default=None)}  # fmt: skip
    control = reference.collected.segments.get(name) if reference else None
    out["seams"] = seams(call, cuts, segments, control)
    if reference is not None and with_wer:
        [ref] = [r for r in reference.collected.recordings if r["file_name"] == name]
        out["wer_vs_reference"] = round(wer(words(ref["transcript"]), heard), 5)
    return out


# ---------------------------------------------------------------- scenarios


def scenario_calls(bench: Bench, name: str) -> list[Call]:
    """The calls of one scenario (written to the audio cache the first time)."""
    args, audio = bench.args, bench.audio
    if name in ("a", "e"):
        return [audio.call("hour", args.a_minutes * 60, seed=args.seed)]
    if name == "b":
        return [audio.call("long", args.b_hours * 3600, seed=args.seed + 1)]
    if name == "c":
        return [audio.call("limit", args.c_minutes * 60, seed=args.seed + 2)]
    rng = random.Random(args.seed + 3)
    minutes = [rng.uniform(5, 40) * args.scale for _ in range(args.d_calls)]
    return [audio.call(f"batch{i}", round(m * 60, 1), seed=args.seed + 100 + i) for i, m in enumerate(minutes)]


def scenario_one_hour(bench: Bench) -> dict[str, Any]:
    args = bench.args
    [call] = scenario_calls(bench, "a")
    every = layouts(args)
    runs = {key: bench.run(every[key], [call]) for key in ("unsplit_1x2", "split_2x1", "split_4x1")}
    base = runs["unsplit_1x2"]
    judged = {key: judge(call, run, reference=None if key == "unsplit_1x2" else base) for key, run in runs.items()}
    rows = {}
    hours = call.seconds / 3600
    for key, run in runs.items():
        j = judged[key]
        cpu_per_hour = run.worker_model_cpu / hours
        base_cpu = base.worker_model_cpu / hours
        rows[key] = {
            **run.summary(),
            **j,
            "speedup_vs_unsplit": round(base.wall_seconds / run.wall_seconds, 3),
            "worker_model_cpu_seconds_per_audio_hour": round(cpu_per_hour, 1),
            "cpu_vs_unsplit": round(cpu_per_hour / base_cpu - 1, 4),
            "wer_minus_unsplit_pp": round(100 * (j["wer"] - judged["unsplit_1x2"]["wer"]), 3),
            "seconds_per_audio_second": round(run.wall_seconds / call.seconds, 5),
        }
    split = rows["split_2x1"]
    seam_rows = [s for key in ("split_2x1", "split_4x1") for s in rows[key]["seams"]]
    targets = {
        "speedup_split_2x1_at_least_1.7x": split["speedup_vs_unsplit"] >= 1.7,
        "cpu_split_2x1_at_most_5pct_more": split["cpu_vs_unsplit"] <= 0.05,
        "wer_split_2x1_at_most_0.5pp_worse": split["wer_minus_unsplit_pp"] <= 0.5,
        "no_sentence_lost_or_doubled_at_a_seam": all(not s["missing"] and not s["doubled"] for s in seam_rows),
    }
    return {"call": {"file": call.path.name, "seconds": round(call.seconds, 1), "sentences": len(call.said),
                     "words": len(call.truth())}, "runs": rows, "targets": targets}  # fmt: skip


def scenario_memory(bench: Bench) -> dict[str, Any]:
    args = bench.args
    [call] = scenario_calls(bench, "b")
    run = bench.run(layouts(args)["split_2x1"], [call])
    j = judge(call, run, with_wer=False)
    peaks = [m["vm_hwm_mib"] or m["peak_rss_mib_sampled"] for m in run.model_memory]
    whole = decode_whole(call.path, args) if not args.no_whole_decode else None
    row = {**run.summary(), **j, "model_peak_mib": max(peaks, default=None), "whole_file_decode": whole}
    return {
        "call": {"file": call.path.name, "seconds": round(call.seconds, 1), "sentences": len(call.said)},
        "runs": {"split_2x1": row},
        "targets": {"model_process_peak_under_1_gib": bool(peaks) and max(peaks) < 1024},
    }


def decode_whole(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The whole file decoded into memory at once (``audio.decode``) in a fresh process: its peak RSS."""
    code = ("import json, resource, sys, time\nfrom transcriber.audio import decode\nt = time.perf_counter()\n"
            "samples = decode(sys.argv[1])\nprint(json.dumps({'seconds': time.perf_counter() - t, "
            "'samples': int(samples.shape[0]), 'ru_maxrss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")  # fmt: skip
    idle = wait_idle("the whole-file decode", args.idle_wait)
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "idle_before": idle, "what": "transcriber.audio.decode(path) in a fresh python process"}


def unsplit_speed(bench: Bench) -> tuple[float, str] | None:
    """Seconds per audio second of unsplit_1x2 on the one-hour call: this run's, else the results file's."""
    found = bench.results.get("a") or _previous(bench.args).get("a")
    if not found:
        return None
    run = found["runs"]["unsplit_1x2"]
    return run["wall_seconds"] / run["audio_seconds"], f"scenario a, {run['audio_seconds'] / 60:.0f}-min call, unsplit_1x2"  # fmt: skip


def scenario_time_limit(bench: Bench) -> dict[str, Any]:
    args = bench.args
    [call] = scenario_calls(bench, "c")
    speed = unsplit_speed(bench)
    if args.c_timeout:
        limit, basis = args.c_timeout, "--c-timeout"
        predicted = speed[0] * call.seconds if speed else None
    elif speed:
        predicted = speed[0] * call.seconds
        limit, basis = max(30, int(args.c_fraction * predicted // 10 * 10)), speed[1]
    else:
        raise RuntimeError("no unsplit speed known: run --one-hour first (same command, or earlier) or give --c-timeout")  # fmt: skip
    print(f"   TASK_TIMEOUT_SECONDS={limit}: one unsplit attempt needs ~{predicted or 0:.0f} s here ({basis})", flush=True)  # fmt: skip
    every = layouts(args)
    env = {"TASK_TIMEOUT_SECONDS": str(limit)}
    split = Layout("split_2x1", every["split_2x1"].label, 2, {**every["split_2x1"].env, **env})
    run = bench.run(split, [call])
    j = judge(call, run)
    longest = j["longest_attempt_seconds"] or 0.0
    row = {**run.summary(), **j, "longest_attempt_share_of_limit": round(longest / limit, 3)}
    out: dict[str, Any] = {
        "call": {"file": call.path.name, "seconds": round(call.seconds, 1), "sentences": len(call.said)},
        "task_timeout_seconds": limit,
        "unsplit_attempt_needs_seconds": round(predicted, 1) if predicted else None,
        "limit_basis": basis,
        "runs": {"split_2x1": row},
        "targets": {"completed": j["status"] == "completed", "no_retries": j["retry_count"] == 0
                    and j["attempts_not_succeeded"] == 0, "longest_attempt_under_half_the_limit": longest < limit / 2},
    }  # fmt: skip
    if args.c_unsplit:
        unsplit = Layout("unsplit_1x2", every["unsplit_1x2"].label, 1, {**every["unsplit_1x2"].env, **env})
        first = bench.run(unsplit, [call], timeout=limit + 180, until=_first_attempt_ended)
        ended = [a for a in first.collected.attempts if a["outcome"] != "running"]
        out["unsplit_first_attempt"] = ended[0] if ended else None
        out["runs"]["unsplit_1x2_first_attempt"] = first.summary()
    return out


def _first_attempt_ended(svc: Services) -> bool:
    from sqlalchemy import text

    with svc.engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM attempts WHERE outcome <> 'running'")).scalar())


def scenario_throughput(bench: Bench) -> dict[str, Any]:
    args = bench.args
    calls = scenario_calls(bench, "d")
    every = layouts(args, scale=1.0 if args.shipped_split else args.scale)
    hours = sum(c.seconds for c in calls) / 3600
    rows = {}
    for key in ("unsplit_1x2", "split_2x1", "batched"):
        run = bench.run(every[key], calls)
        judged = [judge(call, run) for call in calls]
        failed = [j for j in judged if j["status"] != "completed"]
        rows[key] = {
            **run.summary(),
            "audio_hours_per_hour": round(hours / (run.wall_seconds / 3600), 2),
            "worker_model_cpu_seconds_per_audio_hour": round(run.worker_model_cpu / hours, 1),
            "wer": round(sum(j["edits"] for j in judged) / sum(j["truth_words"] for j in judged), 5),
            "sentences": sum(j["sentences"] for j in judged),
            "sentences_missing": sum(j["sentences_missing"] for j in judged),
            "sentences_doubled": sum(j["sentences_doubled"] for j in judged),
            "pieces": sum(j["pieces"] for j in judged),
            "not_completed": len(failed),
            "calls": judged,
        }
    return {
        "scale": args.scale,
        "calls": [{"file": c.path.name, "seconds": round(c.seconds, 1)} for c in calls],
        "audio_hours": round(hours, 3),
        "runs": rows,
    }


def scenario_split_cost(bench: Bench) -> dict[str, Any]:
    """e: what cutting costs by itself, threads held equal: a's call in one 1-thread model process, whole and cut."""
    [call] = scenario_calls(bench, "e")
    every = layouts(bench.args)
    runs = {key: bench.run(every[key], [call]) for key in ("unsplit_1x1", "split_1x1")}
    base = runs["unsplit_1x1"]
    judged = {"unsplit_1x1": judge(call, base), "split_1x1": judge(call, runs["split_1x1"], reference=base)}
    hours = call.seconds / 3600
    rows = {}
    for key, run in runs.items():
        j = judged[key]
        rows[key] = {
            **run.summary(), **j,
            "wall_vs_unsplit": round(run.wall_seconds / base.wall_seconds, 3),
            "worker_model_cpu_seconds_per_audio_hour": round(run.worker_model_cpu / hours, 1),
            "cpu_vs_unsplit": round(run.worker_model_cpu / base.worker_model_cpu - 1, 4),
            "wer_minus_unsplit_pp": round(100 * (j["wer"] - judged["unsplit_1x1"]["wer"]), 3),
        }  # fmt: skip
    split = rows["split_1x1"]
    return {
        "call": {"file": call.path.name, "seconds": round(call.seconds, 1), "sentences": len(call.said)},
        "runs": rows,
        "targets": {"cpu_split_at_most_5pct_more_same_threads": split["cpu_vs_unsplit"] <= 0.05,
                    "wer_split_at_most_0.5pp_worse_same_threads": split["wer_minus_unsplit_pp"] <= 0.5},
    }  # fmt: skip


RUNNERS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "a": scenario_one_hour,
    "b": scenario_memory,
    "c": scenario_time_limit,
    "d": scenario_throughput,
    "e": scenario_split_cost,
}


# ---------------------------------------------------------------- report


def _idle_note(row: dict[str, Any]) -> str:
    return "" if row["idle_during"] and row["idle_before"]["idle"] else " (not idle)"


def _peak(row: dict[str, Any]) -> str:
    peaks = [m["vm_hwm_mib"] or m["peak_rss_mib_sampled"] for m in row["model_memory"]]
    return f"{max(peaks):.0f} MiB" if peaks else "n/a"


def tables(results: dict[str, Any]) -> str:
    out = []
    if "a" in results:
        a = results["a"]
        out += [f"\n### a) one {a['call']['seconds'] / 60:.0f}-min call ({a['call']['sentences']} sentences)",
                "| layout | time to completed | speedup | worker+model CPU-s / audio-h | vs unsplit | WER | vs unsplit | WER vs unsplit transcript | pieces | retries | seams: missing / doubled (control) | peak model RSS |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for key, r in a["runs"].items():
            seam_missing = sum(len(s["missing"]) for s in r["seams"])
            seam_doubled = sum(len(s["doubled"]) for s in r["seams"])
            control = sum(len(s.get("control_missing", [])) + len(s.get("control_doubled", [])) for s in r["seams"])
            seam = f"{seam_missing} / {seam_doubled} of {sum(s['sentences'] for s in r['seams'])} ({control})" if r["seams"] else "no cuts"  # fmt: skip
            out.append(f"| {key}{_idle_note(r)} | {r['wall_seconds']:.1f} s | {r['speedup_vs_unsplit']:.2f}x "
                       f"| {r['worker_model_cpu_seconds_per_audio_hour']:.0f} | {100 * r['cpu_vs_unsplit']:+.1f} % "
                       f"| {100 * r['wer']:.2f} % | {r['wer_minus_unsplit_pp']:+.2f} pp "
                       f"| {100 * r['wer_vs_reference']:.2f} % | {r['pieces']} | {r['attempts_not_succeeded']} | {seam} | {_peak(r)} |"
                       if "wer_vs_reference" in r else
                       f"| {key}{_idle_note(r)} | {r['wall_seconds']:.1f} s | 1.00x | {r['worker_model_cpu_seconds_per_audio_hour']:.0f} "
                       f"| - | {100 * r['wer']:.2f} % | - | - | {r['pieces']} | {r['attempts_not_succeeded']} | {seam} | {_peak(r)} |")  # fmt: skip
        out.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in a["targets"].items()))
    if "b" in results:
        b = results["b"]
        r = b["runs"]["split_2x1"]
        whole = r.get("whole_file_decode")
        out += [f"\n### b) one {b['call']['seconds'] / 3600:.1f}-h call, split_2x1{_idle_note(r)}",
                "| model process | peak (VmHWM) | peak RSS sampled | RSS when warm |", "|---|---|---|---|"]  # fmt: skip
        out += [f"| pid {m['pid']} | {m['vm_hwm_mib']} MiB | {m['peak_rss_mib_sampled']} MiB | {m['rss_mib_at_start']} MiB |" for m in r["model_memory"]]  # fmt: skip
        out.append(f"time to completed {r['wall_seconds']:.1f} s, {r['pieces']} pieces, {r['sentences_missing']} of "
                   f"{r['sentences']} sentences missing, {r['sentences_doubled']} doubled; whole file decoded at once: "
                   + (f"{whole['ru_maxrss_mib']:.0f} MiB peak ({whole['seconds']:.1f} s)" if whole else "not measured"))  # fmt: skip
        out.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in b["targets"].items()))
    if "c" in results:
        c = results["c"]
        r = c["runs"]["split_2x1"]
        out += [f"\n### c) one {c['call']['seconds'] / 60:.0f}-min call under TASK_TIMEOUT_SECONDS={c['task_timeout_seconds']} "
                f"(one unsplit attempt needs ~{c['unsplit_attempt_needs_seconds']} s here: {c['limit_basis']})",
                "| layout | status | time to completed | pieces | attempts | not succeeded | retry_count | longest attempt | share of limit | WER |",
                "|---|---|---|---|---|---|---|---|---|---|",
                f"| split_2x1{_idle_note(r)} | {r['status']} | {r['wall_seconds']:.1f} s | {r['pieces']} | {r['attempt_count']} "
                f"| {r['attempts_not_succeeded']} | {r['retry_count']} | {r['longest_attempt_seconds']:.1f} s "
                f"| {100 * r['longest_attempt_share_of_limit']:.0f} % | {100 * r['wer']:.2f} % |"]  # fmt: skip
        first = c.get("unsplit_first_attempt")
        if first:
            out.append(f"unsplit_1x2 under the same limit: first attempt {first['outcome']} after {first['seconds']} s, "
                       f"audio {first['audio_start']}-{first['audio_end']} s of {c['call']['seconds']:.0f} s")  # fmt: skip
        out.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in c["targets"].items()))
    if "e" in results:
        e = results["e"]
        out += [f"\n### e) what cutting costs by itself: one {e['call']['seconds'] / 60:.0f}-min call, one model process with one thread",
                "| layout | time to completed | vs unsplit | worker+model CPU-s / audio-h | CPU vs unsplit | WER | vs unsplit | WER vs unsplit transcript | pieces | seams: missing / doubled (control) |",
                "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for key, r in e["runs"].items():
            seam = f"{sum(len(s['missing']) for s in r['seams'])} / {sum(len(s['doubled']) for s in r['seams'])} of {sum(s['sentences'] for s in r['seams'])} ({sum(len(s.get('control_missing', [])) + len(s.get('control_doubled', [])) for s in r['seams'])})" if r["seams"] else "no cuts"  # fmt: skip
            out.append(f"| {key}{_idle_note(r)} | {r['wall_seconds']:.1f} s | {r['wall_vs_unsplit']:.2f}x "
                       f"| {r['worker_model_cpu_seconds_per_audio_hour']:.0f} | {100 * r['cpu_vs_unsplit']:+.1f} % "
                       f"| {100 * r['wer']:.2f} % | {r['wer_minus_unsplit_pp']:+.2f} pp "
                       f"| {100 * r['wer_vs_reference']:.2f} % | {r['pieces']} | {seam} |" if "wer_vs_reference" in r else
                       f"| {key}{_idle_note(r)} | {r['wall_seconds']:.1f} s | 1.00x | {r['worker_model_cpu_seconds_per_audio_hour']:.0f} "
                       f"| - | {100 * r['wer']:.2f} % | - | - | {r['pieces']} | {seam} |")  # fmt: skip
        out.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in e["targets"].items()))
    if "d" in results:
        d = results["d"]
        out += [f"\n### d) {len(d['calls'])} calls, {d['audio_hours']:.2f} audio-hours (scale {d['scale']})",
                "| layout | wall | audio-h per hour | worker+model CPU-s / audio-h | WER | sentences missing | doubled | pieces | not completed |",
                "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for key, r in d["runs"].items():
            out.append(f"| {key}{_idle_note(r)} | {r['wall_seconds']:.1f} s | {r['audio_hours_per_hour']:.1f} "
                       f"| {r['worker_model_cpu_seconds_per_audio_hour']:.0f} | {100 * r['wer']:.2f} % "
                       f"| {r['sentences_missing']}/{r['sentences']} | {r['sentences_doubled']} | {r['pieces']} | {r['not_completed']} |")  # fmt: skip
    return "\n".join(out)


def _out_path(args: argparse.Namespace) -> Path:
    return args.out or BENCH / "results" / ("split.smoke.json" if args.smoke else "split.json")


def _previous(args: argparse.Namespace) -> dict[str, Any]:
    path = _out_path(args)
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads(path.read_text()).get("scenarios", {}))
    return {}


def write_results(args: argparse.Namespace, machine: dict[str, Any], results: dict[str, Any], errors: dict[str, str]) -> Path:  # fmt: skip
    path = _out_path(args)
    scenarios = _previous(args)
    for name, result in results.items():
        scenarios[name] = {**result, "machine": machine, "args": {k: str(v) for k, v in vars(args).items()}}
    report = {"machine": machine, "scenarios": dict(sorted(scenarios.items())), "errors": errors}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return path


def _output_segments(folder: Path, file_name: str) -> list[Seg]:
    """The segments of a call as the product wrote them (``transcripts/<name>.json``)."""
    data = json.loads((folder / "transcripts" / Path(file_name).with_suffix(".json").name).read_text())
    return [Seg(s["start"], s["end"], s["text"]) for s in data["segments"]]


def _folder_of(work: Path, row: dict[str, Any]) -> Path:
    """The run folder of a result row in a kept work folder: its layout, and the transcripts of its calls."""
    names = [Path(r["file_name"]).with_suffix(".json").name for r in row["recordings"]]
    found = [f for f in sorted(work.iterdir()) if f.name.split("-", 1)[-1] == row["layout"]
             and all((f / "transcripts" / n).is_file() for n in names)]  # fmt: skip
    if len(found) != 1:
        raise SystemExit(f"--rescore: {len(found)} run folders in {work} match {row['layout']} with {names[:2]}")
    return found[0]


def rescore(args: argparse.Namespace) -> int:
    """Judge the transcripts of a kept work folder again: sentences missing and doubled, over the call and at seams.

    The runs' times, CPU, memory and WER are kept as measured; only what ``judge`` finds in the segments changes.
    """
    path = _out_path(args)
    report = json.loads(path.read_text())
    audio = AudioCache(args.audio_cache)
    for name, scenario in report["scenarios"].items():
        runs = scenario["runs"]
        base = {"a": "unsplit_1x2", "e": "unsplit_1x1"}.get(name)
        reference = _folder_of(args.rescore, runs[base]) if base else None
        for key, row in runs.items():
            if "seams" not in row and "calls" not in row:
                continue  # c's unsplit run, stopped at its first attempt
            folder = _folder_of(args.rescore, row)
            judged = row.get("calls", [row])
            files = [c["file"] for c in scenario["calls"]] if "calls" in row else [row["recordings"][0]["file_name"]]
            for j, file in zip(judged, files, strict=True):
                call, segments = audio.load(file), _output_segments(folder, file)
                control = _output_segments(reference, file) if reference and key != base else None
                j["sentences_missing"] = len(sentences_missing(call.said, segments))
                j["sentences_doubled"] = sum(doubled(call, i, segments) for i in range(len(call.said)))
                j["seams"] = seams(call, j["cuts"], segments, control)
            if "calls" in row:
                row["sentences_missing"] = sum(j["sentences_missing"] for j in judged)
                row["sentences_doubled"] = sum(j["sentences_doubled"] for j in judged)
        if name == "a":
            seam_rows = [s for key in ("split_2x1", "split_4x1") for s in runs[key]["seams"]]
            scenario["targets"]["no_sentence_lost_or_doubled_at_a_seam"] = all(not s["missing"] and not s["doubled"] for s in seam_rows)  # fmt: skip
        scenario["rescored"] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "from": str(args.rescore)}
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(tables(report["scenarios"]))
    print(f"\nrescored {path} from {args.rescore}")
    return 0


# ---------------------------------------------------------------- main


def preflight(args: argparse.Namespace) -> None:
    """Postgres, Redis, espeak-ng, the transcriber command; databases of dead earlier runs are dropped."""
    pipeline_vs_raw.preflight(args, bench="split", prefix=DB_PREFIX)


SMOKE = {"a_minutes": 3.0, "b_hours": 0.1, "c_minutes": 3.0, "scale": 0.04, "d_calls": 4,
         "split_min": 60.0, "split_target": 40.0}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pick = parser.add_argument_group("scenarios (at least one, or --all)")
    pick.add_argument("-a", "--one-hour", action="store_true", help="a: one long call in three layouts")
    pick.add_argument("-b", "--memory", action="store_true", help="b: peak memory of the model processes, 3-h call")
    pick.add_argument(
        "-c", "--time-limit", action="store_true", help="c: a long call under a limit unsplit cannot meet"
    )
    pick.add_argument("-d", "--throughput", action="store_true", help="d: 20 calls, audio-hours per hour per layout")
    pick.add_argument("-e", "--split-cost", action="store_true", help="e: a's call in one 1-thread process, whole and cut")  # fmt: skip
    pick.add_argument("--all", action="store_true", help="a, b, c, d and e, in that order")
    parser.add_argument("--model", default="tiny.en", help="WHISPER_MODEL of the workers (default %(default)s)")
    parser.add_argument("--a-minutes", type=float, default=60.0, help="length of a's call (default %(default)s)")
    parser.add_argument("--b-hours", type=float, default=3.0, help="length of b's call (default %(default)s)")
    parser.add_argument("--c-minutes", type=float, default=68.0, help="length of c's call (default %(default)s)")
    parser.add_argument("--c-fraction", type=float, default=0.5, help="c's limit as a share of one unsplit attempt's time")  # fmt: skip
    parser.add_argument("--c-timeout", type=int, help="c's TASK_TIMEOUT_SECONDS, instead of deriving it")
    parser.add_argument("--c-unsplit", action="store_true", help="c: also unsplit_1x2 under the limit, to its first attempt's end")  # fmt: skip
    parser.add_argument("--scale", type=float, default=0.2, help="d: call lengths x this (1 = 5-40 min; default %(default)s)")  # fmt: skip
    parser.add_argument("--d-calls", type=int, default=20, help="d: number of calls (default %(default)s)")
    parser.add_argument("--shipped-split", action="store_true", help="d: keep SPLIT_MIN/TARGET 600/300 at any scale")
    parser.add_argument("--split-min", type=float, help="SPLIT_MIN_SECONDS of the split layouts (default: shipped)")
    parser.add_argument("--split-target", type=float, help="SPLIT_TARGET_SECONDS of the split layouts (default: shipped)")  # fmt: skip
    parser.add_argument("--no-whole-decode", action="store_true", help="b: skip the whole-file decode figure")
    parser.add_argument("--smoke", action="store_true", help=f"small sizes: {SMOKE}; writes split.smoke.json")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--idle-wait", type=float, default=1800, help="seconds to wait for an idle machine before each run")  # fmt: skip
    parser.add_argument("--warm-timeout", type=float, default=60, help="seconds to wait for the models to load")
    parser.add_argument("--timeout-factor", type=float, default=0.5, help="a run may take this x its audio (at least 300 s)")  # fmt: skip
    parser.add_argument("--postgres-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
                        help="an admin connection; a database per run is created and dropped (default %(default)s)")  # fmt: skip
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15", help="broker; FLUSHED before each run (default %(default)s)")  # fmt: skip
    parser.add_argument("--audio-cache", type=Path, default=Path(tempfile.gettempdir()) / "transcriber-bench-audio")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/split.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, transcripts)")
    parser.add_argument("--rerun-busy", type=int, default=1, help="run once more when the machine was not idle during a run (0: never)")  # fmt: skip
    parser.add_argument("--rescore", type=Path, metavar="WORKDIR", help="judge the transcripts of a kept work folder (--keep) again into the results file; runs nothing")  # fmt: skip
    parser.add_argument("--prepare", action="store_true", help="only write the picked scenarios' audio to the cache")
    parser.add_argument("--live-code", action="store_true", help="run the checkout's code as it is at each start, "
                        "instead of a snapshot taken when the bench starts")  # fmt: skip
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            if parser.get_default(key) == getattr(args, key):
                setattr(args, key, value)
    picked = [name for name, flag in zip(SCENARIOS, (args.one_hour, args.memory, args.time_limit, args.throughput, args.split_cost), strict=True) if flag or args.all]  # fmt: skip
    if not picked:
        parser.error("pick a scenario: --one-hour, --memory, --time-limit, --throughput, or --all")
    args.scenarios = picked
    return args


@contextlib.contextmanager
def work_folder(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="bench-split-"))
    try:
        yield work
    finally:
        if keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    atexit.register(_kill_all)
    if args.rescore:
        return rescore(args)
    if args.prepare:
        bench = Bench(args, Path(tempfile.gettempdir()))
        for name in args.scenarios:
            calls = scenario_calls(bench, name)
            print(f"{name}: {len(calls)} call(s), {sum(c.seconds for c in calls) / 3600:.2f} h, in {args.audio_cache}")
        return 0
    preflight(args)
    errors: dict[str, str] = {}
    began = time.monotonic()
    with work_folder(args.keep) as work:
        machine = {"code": snapshot_code(args, work), **machine_facts(args)}
        bench = Bench(args, work)
        for name in args.scenarios:
            print(f"== {name}) {RUNNERS[name].__name__} ...", flush=True)
            started = time.monotonic()
            try:
                bench.results[name] = RUNNERS[name](bench) | {
                    "seconds": round(time.monotonic() - started, 1),
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            except KeyboardInterrupt:
                errors[name] = "interrupted (Ctrl-C or SIGTERM); later scenarios not run"
                break
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                print(f"== {name}) FAILED: {errors[name][:4000]}", flush=True)
            finally:
                _kill_all()
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    path = write_results(args, machine, bench.results, errors)
    print(tables(bench.results))
    print(f"\n{time.monotonic() - began:.0f} s in all; wrote {path}")
    if any(e.startswith("interrupted") for e in errors.values()):
        return 130
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
