"""Benchmark: how fast the watcher registers a folder that already holds many call recordings.

    .venv/bin/python bench/ingest_files.py                          # 500 x 30-min .m4a (48 kbit/s), SQLite
    .venv/bin/python bench/ingest_files.py --postgres               # the same files, Postgres
    .venv/bin/python bench/ingest_files.py --stand-ins --count 10000  # the first figure's 2-KB random-byte files

Files: one 30-minute AAC-LC mono .m4a (16 kHz, 48 kbit/s, moov first as phone recorders write it; espeak-ng
speech from tests/speech.py) is encoded once with PyAV, then copied ``--count`` times into 50 day folders with
the last 8 bytes of each copy overwritten by its number, so every copy has its own SHA-256 (the audio header,
which is all the duration probe reads, is untouched). The folder is kept in ``--files-dir`` between runs
(SQLite and Postgres register the same files); ``--clean`` removes it at the end.

Each database gets three measurements of ``Ingester.scan()`` (the watcher's own scan, settle time 0):

  first      a fresh database: stat, SHA-256 of every byte, duration probe (av.open, header only), insert 200
             per transaction, send (to a list: the broker is not measured). ``--repeat`` rounds (default 3) of
             two: ``cold`` (every file's pages evicted from the page cache first with posix_fadvise DONTNEED: a
             watcher that starts over a backlog on disk) and ``warm`` (the files were just read: a file copied
             in moments ago). The median of each and the spread are reported.
  rescan     the same Ingester again over the unchanged folder: stat only.
  restart    a new Ingester on the filled database (a restarted watcher): loads the known rows, stats, no hash.

For the first scans the time is split into hashing, probing and the insert transaction (register_files plus
commit), timed around the watcher's own calls; the rest is walking the folder, stat and sending. The probe runs
after the batch's hashes, so it reads headers the hash has just brought into the cache. Each first scan also
records the CPU seconds the rest of the machine used meanwhile (other users' work: a figure with much of it is
noisy), Postgres's apart.
Postgres: a fresh database ``transcriber_bench_ingest_<pid>_<n>`` per first scan, dropped afterwards.
Prints a table and writes bench/results/ingest_files[_stand_ins]_<database>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import transcriber.ingest as ingest_module
from transcriber.db import make_engine, make_session_factory
from transcriber.ingest import Ingester
from transcriber.migrate import upgrade_to_head

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))


# ---------------------------------------------------------------- the files


def encode_call(path: Path, minutes: float, kbps: int, rate: int = 16000) -> None:
    """``minutes`` of espeak-ng speech as AAC-LC mono .m4a at ``kbps``, index (moov) first."""
    import av
    import numpy as np

    from speech import long_speech

    samples = long_speech(minutes * 60)[: int(minutes * 60 * rate)]
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
    partial = path.with_suffix(".tmp.m4a")
    with av.open(str(partial), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        stream.codec_context.bit_rate = kbps * 1000
        for start in range(0, pcm.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start : start + 1024]), format="s16",
                                               layout="mono")  # fmt: skip
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    os.replace(partial, path)


def file_name(n: int) -> str:
    return f"day{n % 50:02d}/Call recording +1813435{n:04d}_200301_171119.m4a"


def make_calls(folder: Path, count: int, minutes: float, kbps: int) -> tuple[Path, dict[str, Any]]:
    """``count`` distinct copies of one encoded call under ``folder/inbox``; reused when already there."""
    template = folder / "template.m4a"
    if not template.is_file():
        print(f"encoding a {minutes:g}-minute call at {kbps} kbit/s ...", flush=True)
        encode_call(template, minutes, kbps)
    size = template.stat().st_size
    inbox = folder / "inbox"
    need = shutil.disk_usage(folder).free
    missing = [n for n in range(count) if not (inbox / file_name(n)).is_file()]
    if len(missing) * size > need - 2 * 2**30:
        sys.exit(f"not enough disk under {folder}: {len(missing)} x {size / 1e6:.1f} MB needed, "
                 f"{need / 1e9:.1f} GB free (keep 2 GB)")  # fmt: skip
    if missing:
        print(f"copying {len(missing)} files of {size / 1e6:.1f} MB ...", flush=True)
    data = bytearray(template.read_bytes())
    for n in missing:
        data[-8:] = n.to_bytes(8, "big")  # own content hash; the header the probe reads is unchanged
        target = inbox / file_name(n)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        part.write_bytes(data)
        os.replace(part, target)
    for extra in sorted(inbox.glob("day*/*.m4a")):  # a previous run with a larger --count
        if int(extra.name.split("+1813435")[1][:4]) >= count:
            extra.unlink()
    from transcriber.audio import probe_duration

    info = {
        "kind": "m4a",
        "count": count,
        "bytes_each": size,
        "bytes_total": size * count,
        "audio_minutes_each": round((probe_duration(str(template)) or 0) / 60, 2),
        "format": f"AAC-LC mono 16 kHz {kbps} kbit/s .m4a (moov first), espeak-ng speech, copies differ in "
        "their last 8 bytes",
        "folder": str(inbox),
    }
    return inbox, info


def make_stand_ins(folder: Path, count: int) -> tuple[Path, dict[str, Any]]:
    """The old benchmark's files: 2 KB of random bytes named .m4a (the probe fails fast on them)."""
    inbox = folder / "inbox"
    for n in range(count):
        target = inbox / file_name(n)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(os.urandom(2048))
    info = {
        "kind": "stand-ins",
        "count": count,
        "bytes_each": 2048,
        "bytes_total": 2048 * count,
        "audio_minutes_each": None,
        "format": "2 KB of random bytes named .m4a: not audio (the duration probe fails at once)",
        "folder": str(inbox),
    }
    return inbox, info


def evict(inbox: Path) -> None:
    """Drop every file's pages from the page cache (clean pages only: sync first)."""
    os.sync()
    for path in inbox.glob("day*/*.m4a"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- timing the watcher's own calls


class Split:
    """Seconds spent in the hash, the probe and the insert transaction, timed around the watcher's calls."""

    def __init__(self) -> None:
        self.seconds = {"hash": 0.0, "probe": 0.0, "insert": 0.0}

    def _timed(self, key: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - began

        return wrapper

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        saved = ingest_module.sha256_of, ingest_module.probe_duration, ingest_module.transaction
        original_transaction = ingest_module.transaction

        @contextlib.contextmanager
        def timed_transaction(factory: Any) -> Iterator[Any]:
            began = time.perf_counter()
            try:
                with original_transaction(factory) as session:
                    yield session
            finally:
                self.seconds["insert"] += time.perf_counter() - began

        ingest_module.sha256_of = self._timed("hash", ingest_module.sha256_of)  # type: ignore[assignment]
        ingest_module.probe_duration = self._timed("probe", ingest_module.probe_duration)  # type: ignore[assignment]
        ingest_module.transaction = timed_transaction  # type: ignore[assignment]
        try:
            yield
        finally:
            ingest_module.sha256_of, ingest_module.probe_duration, ingest_module.transaction = saved  # type: ignore[assignment]


# ---------------------------------------------------------------- databases


class Databases:
    """A fresh database per first scan: a SQLite file, or a Postgres database that is dropped afterwards."""

    def __init__(self, postgres_admin: str | None, tmp: Path) -> None:
        self.admin, self.tmp, self.n = postgres_admin, tmp, 0

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        self.n += 1
        if not self.admin:
            yield f"sqlite:///{self.tmp}/bench-{self.n}.db"
            return
        from sqlalchemy import create_engine, text

        name = f"transcriber_bench_ingest_{os.getpid()}_{self.n}"
        admin = create_engine(self.admin, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield self.admin.rsplit("/", 1)[0] + "/" + name
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def _busy_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and those of every postgres process."""
    import psutil

    t = psutil.cpu_times()
    busy = sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))
    postgres = 0.0
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith("postgres"):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                postgres += times.user + times.system
    return busy, postgres


def measure(url: str, inbox: Path, info: dict[str, Any], cache: str) -> dict[str, Any]:
    upgrade_to_head(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    sent: list[object] = []
    try:
        if cache == "cold":
            evict(inbox)
        ingester = Ingester(sessions, inbox, settle_seconds=0, send=lambda *message: sent.append(message))
        split = Split()
        (busy0, pg0), cpu0, began = _busy_cpu(), time.process_time(), time.perf_counter()
        with split.installed():
            registered = ingester.scan()
        first, first_cpu = time.perf_counter() - began, time.process_time() - cpu0
        busy1, pg1 = _busy_cpu()
        began = time.perf_counter()
        again = ingester.scan()
        rescan = time.perf_counter() - began
        began = time.perf_counter()
        restarted = Ingester(sessions, inbox, settle_seconds=0, send=lambda *message: sent.append(message))
        after_restart = restarted.scan()
        restart = time.perf_counter() - began
    finally:
        engine.dispose()
    mb = info["bytes_total"] / 1e6
    rest = first - sum(split.seconds.values())
    return {
        "cache": cache,
        "registered": registered,
        "first_scan_seconds": round(first, 3),
        "first_scan_cpu_seconds": round(first_cpu, 2),
        "postgres_cpu_seconds": round(pg1 - pg0, 2),  # every postgres process: other users' queries too
        "others_cpu_seconds": round(max(0.0, busy1 - busy0 - first_cpu - (pg1 - pg0)), 2),
        "files_per_second": round(registered / first, 1),
        "mb_per_second": round(mb / first, 1),
        "split_seconds": {**{k: round(v, 3) for k, v in split.seconds.items()}, "walk_stat_send": round(rest, 3)},
        "rescan_seconds": round(rescan, 4),
        "rescan_registered": again,
        "rescan_files_per_second": round(info["count"] / rescan, 0),
        "restart_rescan_seconds": round(restart, 4),
        "restart_registered": after_restart,
        "restart_files_per_second": round(info["count"] / restart, 0),
    }


def wait_for_quiet(limit: float) -> float:
    """Wait, at most ``limit`` s, until the machine has been under 10% busy for 10 s; returns the seconds waited."""
    import psutil

    began = time.monotonic()
    while limit and time.monotonic() - began < limit:
        if psutil.cpu_percent(interval=10) < 10:
            break
    return round(time.monotonic() - began, 1)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the median first scan, and the spread of every run's first scan and rescans."""
    if not runs:
        return None
    ordered = sorted(runs, key=lambda r: float(r["first_scan_seconds"]))
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["first_scan_spread"] = [ordered[0]["first_scan_seconds"], ordered[-1]["first_scan_seconds"]]
    rescans = sorted(r["rescan_seconds"] for r in runs)
    restarts = sorted(r["restart_rescan_seconds"] for r in runs)
    median["rescan_spread"] = [rescans[0], rescans[-1]]
    median["restart_rescan_spread"] = [restarts[0], restarts[-1]]
    return median


def _commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH.parent), "log", "-1", "--format=%H", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(["git", "-C", str(BENCH.parent), "diff", "--quiet", "HEAD", "--", "src"]).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip() + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500, help="files (default 500)")
    parser.add_argument("--minutes", type=float, default=30, help="audio per file (default 30)")
    parser.add_argument("--kbps", type=int, default=48, help="AAC bit rate (default 48)")
    parser.add_argument("--stand-ins", action="store_true", help="2-KB random-byte files instead (the old figure)")
    parser.add_argument("--postgres", nargs="?", const="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
                        metavar="ADMIN_URL", help="Postgres (admin URL, default %(const)s); default: SQLite")  # fmt: skip
    parser.add_argument("--cache", action="append", choices=("cold", "warm"),
                        help="page cache before the first scan (repeatable; default: cold, then warm)")  # fmt: skip
    parser.add_argument("--files-dir", type=Path, help="where the files are made and kept "
                        "(default /tmp/transcriber-bench-ingest/<kind>)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="rounds of cold + warm (default 3)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each round wait, at most this long, for a machine under 10%% busy for 10 s")  # fmt: skip
    parser.add_argument("--clean", action="store_true", help="remove the files at the end")
    args = parser.parse_args()
    kind = "stand_ins" if args.stand_ins else f"m4a_{args.minutes:g}min_{args.kbps}k"
    folder = args.files_dir or Path(tempfile.gettempdir()) / "transcriber-bench-ingest" / kind
    folder.mkdir(parents=True, exist_ok=True)
    if args.stand_ins:
        shutil.rmtree(folder / "inbox", ignore_errors=True)
        inbox, info = make_stand_ins(folder, args.count)
    else:
        inbox, info = make_calls(folder, args.count, args.minutes, args.kbps)
    database = "postgres" if args.postgres else "sqlite"
    runs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            databases = Databases(args.postgres, Path(tmp))
            for _ in range(args.repeat):
                waited = wait_for_quiet(args.wait_idle)
                for cache in args.cache or ["cold", "warm"]:
                    with databases.fresh() as url:
                        runs.append(measure(url, inbox, info, cache) | {"waited_for_quiet_seconds": waited})
                        print(f"  {cache}: {runs[-1]['first_scan_seconds']:.2f}s", flush=True)
    finally:
        if args.clean or args.stand_ins:
            shutil.rmtree(folder, ignore_errors=True)
    result = {
        "files": info,
        "database": database,
        "median": {cache: _median([r for r in runs if r["cache"] == cache]) for cache in ("cold", "warm")},
        "runs": runs,
        "settings": {"settle_seconds": 0, "batch_per_transaction": Ingester.batch_size},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "commit": _commit(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    mb = info["bytes_total"] / 1e6
    print(f"{info['count']} files, {info['bytes_each'] / 1e6:.2f} MB each ({mb:,.0f} MB), {info['format']}; {database}")
    print(f"{'cache':<6} {'first scan':>10} {'files/s':>8} {'MB/s':>7}  {'hash':>6} {'probe':>6} {'insert':>6} "
          f"{'rest':>6}  {'rescan':>8} {'restart':>8} {'others CPU-s':>12}")  # fmt: skip
    for r in runs:
        s = r["split_seconds"]
        print(f"{r['cache']:<6} {r['first_scan_seconds']:>9.2f}s {r['files_per_second']:>8.1f} {r['mb_per_second']:>7.1f}  "
              f"{s['hash']:>6.2f} {s['probe']:>6.2f} {s['insert']:>6.2f} {s['walk_stat_send']:>6.2f}  "
              f"{r['rescan_seconds']:>7.3f}s {r['restart_rescan_seconds']:>7.3f}s {r['others_cpu_seconds']:>12.2f}")  # fmt: skip
    for cache, m in result["median"].items():
        if m:
            print(f"median {cache}: {m['first_scan_seconds']}s ({m['files_per_second']} files/s, {m['mb_per_second']} MB/s; "
                  f"spread {m['first_scan_spread'][0]}-{m['first_scan_spread'][1]}s)")  # fmt: skip
    suffix = "_stand_ins" if args.stand_ins else ""
    out = BENCH / "results" / f"ingest_files{suffix}_{database}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
