"""Soak: many short recordings through two workers while a worker is SIGKILLed at random, then check the database.

    .venv/bin/python bench/soak.py                              # 300 recordings, a kill every 20-40 s
    .venv/bin/python bench/soak.py --recordings 40 --kill-every 4 8   # a quick run (the test suite's size)

Real processes, as an operator runs them: ``transcriber worker --pool=solo`` x N (one CPU thread each),
``transcriber beat`` and ``transcriber watch``, on a fresh Postgres database (``soak_<pid>``, dropped afterwards)
and a Redis database (flushed first). As soon as a call is under way, and then every ``--kill-every MIN MAX``
seconds, one worker caught in the middle of a call (chosen at random among those that are; none, no kill) is
killed with SIGKILL together with its model process (its process group: no goodbye, no heartbeat) and started
again at once, as a service manager would. The workers are paused (SIGSTOP) while the database says which is
mid-call, so the one chosen cannot finish its call before the kill. A call is hit at most twice, fewer times than
the three retries it has: so the soak always ends, and every recording must complete. Each recording is one of the
keyed sentences of tests/speech.py at its own speed and pitch, so its transcript can be checked for its keywords.

At the end it checks, and exits 1 if any fails:
  * every file is exactly one recording, and every recording is ``completed`` (a failed one is a problem, with its
    cause);
  * every transcript holds its own sentence's keyword once, and every recording succeeded exactly once;
  * no recording has two attempts whose running times overlap (started before the previous one ended);
  * every kill cost the attempt it hit (at least as many attempts ``lost`` as kills): the soak was under fire.

Writes bench/results/soak.json (a run with fewer than 300 recordings writes soak.quick.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from speech import KEYED_SENTENCES, keywords_in_order_once, silence, speak, write_audio  # noqa: E402

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")
HITS_PER_CALL = 2  # below TASK_MAX_RETRIES (3): a call's own kills never use up its retries


def clip_for(index: int) -> tuple[Any, str]:
    """The audio of recording ``index`` (distinct for every index) and the keywords it must yield."""
    import numpy as np

    keywords, sentence = KEYED_SENTENCES[index % len(KEYED_SENTENCES)]
    # Voices tiny.en hears well (at speed 187 and pitch 63 it missed a sentence); the lead-in makes each unique.
    speed, pitch = 145 + (index * 7) % 30, 40 + (index * 13) % 20
    audio = np.concatenate([silence(0.2 + index * 0.001), speak(sentence, speed=speed, pitch=pitch), silence(0.4)])
    return audio, keywords


@dataclass
class SoakResult:
    recordings: int
    workers: int
    kill_every: tuple[float, float]
    kills: int = 0
    wall_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class MidCall:
    """Which worker processes are in the middle of a call, by the database, and how often each call was hit.

    A worker's name ends in the id of the thread that runs its attempts: the process id under ``--pool=solo``.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.hits: dict[Any, int] = {}

    def targets(self) -> dict[int, Any]:
        """Worker pid -> the recording it is transcribing, for calls that may be hit again."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT worker, id FROM recordings WHERE status = 'processing'")).all()
        return {
            int(tail): recording
            for worker, recording in rows
            if worker and (tail := worker.rsplit(":", 1)[-1]).isdigit() and self.hits.get(recording, 0) < HITS_PER_CALL
        }


class Services:
    """The soak's processes; workers are started in their own process group so SIGKILL takes the model too."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start(self, command: str, *args: str) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.workdir / f"{command}-{self.started}.log", "wb")  # noqa: SIM115
        if command == "beat":
            args = (*args, f"--schedule={self.workdir / 'beat-schedule'}")
        proc = subprocess.Popen(
            [TRANSCRIBER, command, *args], cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        self.signal(proc, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)

    def signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        """Signal the process and all it started (its model process)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def kill_one_mid_call(self, pool: list[subprocess.Popen[bytes]], mid_call: MidCall, rng: random.Random) -> bool:
        """SIGKILL a worker of ``pool`` caught mid-call and start another in its place; False when none is.

        All are paused while the database is read, so the one chosen cannot finish its call before the kill.
        """
        for proc in pool:
            self.signal(proc, signal.SIGSTOP)
        try:
            targets = mid_call.targets()
            busy = [n for n, proc in enumerate(pool) if proc.pid in targets]
            if busy:
                victim = rng.choice(busy)
                recording = targets[pool[victim].pid]
                mid_call.hits[recording] = mid_call.hits.get(recording, 0) + 1
                self.kill(pool[victim])
                pool[victim] = self.start("worker", "--pool=solo")
        finally:
            for proc in pool:
                self.signal(proc, signal.SIGCONT)
        return bool(busy)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc, signal.SIGTERM)
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)


def run_soak(
    workdir: Path,
    *,
    database_url: str,
    redis_url: str,
    recordings: int,
    workers: int = 2,
    kill_every: tuple[float, float] = (20.0, 40.0),
    timeout: float = 3600.0,
    say: Callable[[str], None] = print,
    seed: int = 1,
    diarize: str = "auto",
) -> SoakResult:
    """Run the soak in ``workdir`` against a migrated, empty database; return what was found.

    ``diarize``: DIARIZE for the workers (the product's default, auto, diarizes every mono call)."""
    from sqlalchemy import create_engine, text

    inbox, outbox = workdir / "inbox", workdir / "transcripts"
    inbox.mkdir(parents=True)
    outbox.mkdir()
    expected: dict[str, str] = {}
    say(f"speaking {recordings} recordings")
    for n in range(recordings):
        audio, keywords = clip_for(n)
        write_audio(workdir / "staging" / f"call {n:04d}.m4a", audio)
        expected[f"call {n:04d}.m4a"] = keywords
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(workdir)),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "WATCH_DIR": str(inbox),
        "OUTPUT_DIR": str(outbox),
        "OUTPUT_FORMATS": "txt",
        "WHISPER_MODEL": "tiny.en",
        "WHISPER_CPU_THREADS": "1",
        "HEARTBEAT_SECONDS": "1",
        "STUCK_TIMEOUT_SECONDS": "5",
        "CLEANUP_INTERVAL_SECONDS": "1",
        "WATCH_SETTLE_SECONDS": "0.5",
        "WATCH_POLL_SECONDS": "1",
        "RETRY_BACKOFF_SECONDS": "0",
        "TASK_MAX_RETRIES": "3",  # the default, above HITS_PER_CALL
        "DIARIZE": diarize,
    }
    result = SoakResult(recordings, workers, kill_every)
    services = Services(workdir, env)
    engine = create_engine(database_url)
    rng = random.Random(seed)

    def settled() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(text("SELECT count(*) FROM recordings WHERE status IN ('completed', 'failed')")).scalar()
                or 0
            )

    began = time.monotonic()
    try:
        pool = [services.start("worker", "--pool=solo") for _ in range(workers)]
        mid_call = MidCall(engine)
        services.start("beat")
        services.start("watch")
        for path in sorted((workdir / "staging").iterdir()):
            path.rename(inbox / path.name)  # appear whole, as a finished copy does
        next_kill = time.monotonic()  # the first kill as soon as a call is under way: never a soak without one
        last_report = 0.0
        while True:
            done = settled()
            now = time.monotonic()
            if done >= recordings:
                break
            if now - began > timeout:
                result.problems.append(f"timed out after {timeout:.0f}s with {done}/{recordings} settled")
                break
            if now >= next_kill:
                hit = services.kill_one_mid_call(pool, mid_call, rng)
                result.kills += int(hit)
                if result.kills:  # the first kill waits for a call under way; each later one is a single look
                    next_kill = now + rng.uniform(*kill_every)
            if now - last_report > 10:
                say(f"  {now - began:5.0f}s  {done}/{recordings} settled, {result.kills} kill(s)")
                last_report = now
            time.sleep(0.2)
        result.wall_seconds = round(time.monotonic() - began, 1)
    finally:
        services.stop_all()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, file_name, status, error_message, transcript FROM recordings")).all()
        attempts = conn.execute(
            text(
                "SELECT recording_id, attempt, outcome, started_at, finished_at FROM attempts ORDER BY recording_id, attempt"
            )
        ).all()
    engine.dispose()
    result.problems += check(rows, attempts, expected)
    for row in rows:
        result.statuses[row.status] = result.statuses.get(row.status, 0) + 1
    for attempt in attempts:
        result.attempts[attempt.outcome] = result.attempts.get(attempt.outcome, 0) + 1
    if result.attempts.get("lost", 0) < result.kills:
        result.problems.append(f"{result.kills} SIGKILLs mid-call but {result.attempts.get('lost', 0)} attempts lost")
    return result


def check(rows: list[Any], attempts: list[Any], expected: dict[str, str]) -> list[str]:
    """Everything the soak promises, as a list of problems (empty = all good)."""
    problems = []
    names = [row.file_name for row in rows]
    if sorted(names) != sorted(expected):
        problems.append(f"{len(rows)} recordings for {len(expected)} files (duplicates or losses)")
    by_recording: dict[Any, list[Any]] = {row.id: [] for row in rows}
    for attempt in attempts:
        by_recording.setdefault(attempt.recording_id, []).append(attempt)
    for row in rows:
        if row.status != "completed":  # a kill is survivable; whatever else failed it is a problem
            problems.append(f"{row.file_name}: ended {row.status}: {row.error_message or 'no cause given'}")
            continue
        keywords = expected.get(row.file_name, "(not a file of the soak)")
        if missing_or_repeated := keywords_in_order_once(row.transcript or "", [keywords]):
            problems.append(f"{row.file_name}: transcript {row.transcript!r}: {', '.join(missing_or_repeated)}")
    names_by_id = {row.id: row.file_name for row in rows}
    for recording_id, runs in by_recording.items():
        name = names_by_id.get(recording_id, recording_id)
        succeeded = sum(1 for a in runs if a.outcome == "succeeded")
        if succeeded != 1:
            problems.append(f"{name}: {succeeded} attempts succeeded")
        if any(a.outcome == "running" for a in runs):
            problems.append(f"{name}: an attempt still 'running' at the end")
        for before, after in zip(runs, runs[1:], strict=False):
            if before.finished_at is None or after.started_at < before.finished_at:
                problems.append(f"{name}: attempts {before.attempt} and {after.attempt} overlap")
    return problems


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, nargs=2, default=(20.0, 40.0), metavar=("MIN", "MAX"))
    parser.add_argument("--admin-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="flushed first")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped: still stop the services, drop the database

    import redis
    from sqlalchemy import create_engine, text

    from transcriber.migrate import upgrade_to_head

    database = f"soak_{os.getpid()}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    url = args.admin_url.rsplit("/", 1)[0] + "/" + database
    redis.Redis.from_url(args.redis_url).flushdb()
    try:
        upgrade_to_head(url)
        with tempfile.TemporaryDirectory(prefix="transcriber-soak-") as tmp:
            result = run_soak(
                Path(tmp), database_url=url, redis_url=args.redis_url, recordings=args.recordings,
                workers=args.workers, kill_every=tuple(args.kill_every), timeout=args.timeout, seed=args.seed,
            )  # fmt: skip
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()
    report = {
        **asdict(result),
        "ok": result.ok,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "command": "bench/soak.py " + " ".join(sys.argv[1:]),
    }
    name = "soak.json" if args.recordings >= 300 else "soak.quick.json"
    (BENCH / "results" / name).write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n{result.recordings} recordings, {result.workers} workers, {result.kills} SIGKILLs, {result.wall_seconds}s"
    )
    print(f"recordings: {result.statuses}   attempts: {result.attempts}")
    print(
        "OK: nothing lost, nothing run twice at once" if result.ok else "PROBLEMS:\n  " + "\n  ".join(result.problems)
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(_main())
    raise SystemExit(130)
