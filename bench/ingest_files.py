"""Benchmark: how fast the watcher registers a folder that already holds many files.

    .venv/bin/python bench/ingest_files.py                   # 10,000 files, SQLite
    .venv/bin/python bench/ingest_files.py --database-url postgresql+psycopg2://postgres@127.0.0.1/bench --count 10000

Measures the first scan (stat, hash, insert in batches, send) and a rescan of the
unchanged folder (stat only). Messages go to a list (the broker is not measured).
Prints a table and writes bench/results/ingest_files.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from transcriber.db import make_engine, make_session_factory
from transcriber.ingest import Ingester
from transcriber.migrate import upgrade_to_head


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "inbox"
        for n in range(args.count):
            folder = inbox / f"day{n % 50:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"Call recording +1813435{n:04d}_200301_171119.m4a").write_bytes(os.urandom(2048))
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        upgrade_to_head(url)
        engine = make_engine(url)
        sent: list[object] = []
        ingester = Ingester(
            make_session_factory(engine), inbox, settle_seconds=0, send=lambda *message: sent.append(message)
        )
        began = time.perf_counter()
        registered = ingester.scan()
        first = time.perf_counter() - began
        began = time.perf_counter()
        again = ingester.scan()
        rescan = time.perf_counter() - began
        engine.dispose()
    result = {
        "files": args.count,
        "registered": registered,
        "first_scan_seconds": round(first, 2),
        "files_per_second": round(registered / first, 1),
        "rescan_seconds": round(rescan, 3),
        "rescan_registered": again,
        "database": url.split(":", 1)[0],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
    }
    print(f"{'files':>8} {'first scan':>11} {'files/s':>9} {'rescan':>8}  database")
    print(f"{registered:>8} {first:>10.2f}s {result['files_per_second']:>9} {rescan:>7.3f}s  {result['database']}")
    out = Path(__file__).parent / "results" / "ingest_files.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
