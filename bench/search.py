"""Benchmark: full-text search (``transcriber search``) over a call centre's worth of transcripts.

    .venv/bin/python bench/search.py                       # 10,000 recordings of 30-minute calls, Postgres
    .venv/bin/python bench/search.py --recordings 1000     # a quick look
    .venv/bin/python bench/search.py --sqlite              # the same rows in SQLite (FTS5) as well
    .venv/bin/python bench/search.py --reuse               # query the database the last run built

Data: ``--recordings`` calls of 30 minutes, each cut into segments as Whisper cuts calls (2.5-6.5 s, 0.1-0.8 s
apart: about 375 per call, 4-20 words each, agent and caller taking turns), seeded. Words are drawn from a
Zipf law (s = 1.07) over call-centre English (the most common words first, then the trade's words, then
20,000 made-up rare ones); a few keywords are put in at set rates per segment: refund 0.4%, cancel 0.4%,
supervisor 0.08%, "full refund" 0.05%, chargeback 0.005%. Recordings carry a phone number (one of 2,000),
a call start over a year, a status (3% failed). Postgres: a database ``transcriber_bench_search`` dropped and
made again, migrated to head, the rows loaded with COPY, then the GIN index built, ANALYZE and VACUUM;
kept afterwards for ``--reuse`` and EXPLAIN (``--drop`` drops it).

Then each query of QUERIES runs ``--repeat`` times (after two unmeasured runs) through ``search.search`` and
``search.to_json``, as ``transcriber search --json`` does less its start-up: median and p95 per query and
over all. Writes bench/results/search.json (bench/results/search_sqlite.json for SQLite).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from transcriber import search
from transcriber.db import make_engine, make_session_factory
from transcriber.migrate import upgrade_to_head
from transcriber.report import CallFilter

BENCH = Path(__file__).resolve().parent
DATABASE = "transcriber_bench_search"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
CALL_SECONDS = 1800.0

COMMON = (
    "i you the to a and it that is yes okay so my your of for can on this we have be me what just do not are"
    " no if get was will at there they all about like one know please thank thanks right now need help call"
    " sure well um uh oh hi hello let see how with here would could in an our us go going want got time"
    " see yeah good great fine sorry again make sure check look today day week minute moment hold on"
)
TRADE = (
    "account order payment card number email address delivery subscription plan bill charge credit invoice"
    " service package phone code password login website app problem issue ticket case reference date month"
    " price fee balance transfer bank store item product return exchange shipping tracking confirm update"
    " details name customer agent team department manager policy terms discount offer upgrade contract"
    " renewal renew monthly annual cost total amount paid pay paying transaction statement receipt"
)
KEYWORDS: tuple[tuple[float, tuple[str, ...]], ...] = (  # (rate per segment, the words put in)
    (0.004, ("refund",)),
    (0.001, ("refunded",)),
    (0.004, ("cancel",)),
    (0.0008, ("supervisor",)),
    (0.0005, ("full", "refund")),
    (0.00005, ("chargeback",)),
)


def vocabulary(rng: np.random.Generator, rare: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """The words, most common first, and their Zipf probabilities."""
    syllables = ["ka", "lo", "mi", "ren", "tas", "vu", "zel", "pra", "do", "quin", "sha", "bor", "te", "lix", "nam"]
    made_up: dict[str, None] = {}
    while len(made_up) < rare:
        made_up["".join(rng.choice(syllables, size=int(rng.integers(2, 5))))] = None
    words = list(dict.fromkeys(COMMON.split() + TRADE.split() + list(made_up)))
    weights = 1.0 / np.arange(1, len(words) + 1) ** 1.07
    return np.array(words, dtype=object), weights / weights.sum()


def calls(count: int, seed: int = 14) -> Iterator[tuple[dict[str, Any], list[tuple[int, float, float, str, str]]]]:
    """(recording, [(idx, start, end, text, speaker), ...]) for ``count`` calls, the same for one seed."""
    rng = np.random.default_rng(seed)
    words, p = vocabulary(rng)
    phones = [f"+1813{n:07d}" for n in rng.integers(0, 10**7, size=2000)]
    for n in range(count):
        rid = uuid.UUID(int=(int(rng.integers(0, 2**62)) << 64) | n)
        started = EPOCH + timedelta(seconds=int(rng.integers(0, 365 * 86400)))
        recording = {
            "id": rid, "file_name": f"Call recording {phones[n % len(phones)]}_{started:%y%m%d_%H%M%S}.m4a",
            "phone_number": phones[int(rng.integers(0, len(phones)))], "call_started_at": started,
            "created_at": started + timedelta(minutes=31), "status": "failed" if rng.random() < 0.03 else "completed",
        }  # fmt: skip
        lengths = rng.uniform(2.5, 6.5, size=500)
        gaps = rng.uniform(0.1, 0.8, size=500)
        ends = np.cumsum(lengths + gaps) - gaps
        kept = int(np.searchsorted(ends, CALL_SECONDS))
        counts = rng.integers(4, 21, size=kept)
        drawn = rng.choice(words, size=int(counts.sum()), p=p)
        keyword_draws = rng.random(size=(kept, len(KEYWORDS)))
        segments, at, turn = [], 0, 0
        for i in range(kept):
            said = list(drawn[at : at + counts[i]])
            at += counts[i]
            for k, (rate, inserted) in enumerate(KEYWORDS):
                if keyword_draws[i, k] < rate:
                    place = int(rng.integers(0, len(said) + 1))
                    said[place:place] = inserted
            turn ^= int(rng.random() < 0.6)
            sentence = " ".join(said)
            sentence = sentence[0].upper() + sentence[1:] + ("?" if rng.random() < 0.2 else ".")
            start = float(ends[i] - lengths[i])
            segments.append((i, round(start, 2), round(float(ends[i]), 2), sentence, ("agent", "caller")[turn]))
        yield recording, segments


# ---------------------------------------------------------------- loading


def build_postgres(admin_url: str, count: int) -> tuple[str, dict[str, Any]]:
    """A fresh database with ``count`` calls; returns its URL and the load's figures."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {DATABASE}"))
    admin.dispose()
    url = make_url(admin_url).set(database=DATABASE).render_as_string(hide_password=False)
    upgrade_to_head(url)
    engine = make_engine(url)
    raw = engine.raw_connection()
    figures: dict[str, Any] = {"generate_seconds": 0.0, "copy_seconds": 0.0}
    try:
        cur = raw.cursor()
        cur.execute("DROP INDEX ix_segments_search_vector")  # built once after the load: much faster than per row
        raw.commit()
        recordings, segments = io.StringIO(), io.StringIO()
        rows = 0

        def flush() -> None:
            began = time.perf_counter()
            for name, buffer, columns in (
                ("recordings", recordings, "id, file_path, file_name, file_size, content_sha256, status,"
                 " phone_number, call_started_at, created_at, updated_at, duration_seconds, language"),
                ("segments", segments, 'recording_id, idx, start, "end", text, speaker'),
            ):  # fmt: skip
                buffer.seek(0)
                cur.copy_expert(f"COPY {name} ({columns}) FROM STDIN", buffer)
                buffer.seek(0)
                buffer.truncate()
            raw.commit()
            figures["copy_seconds"] += time.perf_counter() - began

        began = time.perf_counter()
        for n, (rec, segs) in enumerate(calls(count), start=1):
            when = rec["call_started_at"].isoformat()
            recordings.write(
                f"{rec['id']}\t/calls/{rec['file_name']}\t{rec['file_name']}\t9952190\t{rec['id'].hex * 2}\t"
                f"{rec['status']}\t{rec['phone_number']}\t{when}\t{rec['created_at'].isoformat()}\t"
                f"{rec['created_at'].isoformat()}\t{CALL_SECONDS}\ten\n"
            )
            segments.writelines(f"{rec['id']}\t{i}\t{s}\t{e}\t{t}\t{who}\n" for i, s, e, t, who in segs)
            rows += len(segs)
            if n % 250 == 0 or n == count:
                figures["generate_seconds"] += time.perf_counter() - began
                flush()
                began = time.perf_counter()
                print(f"  loaded {n} recordings, {rows} segments", file=sys.stderr, flush=True)
        figures["segments"] = rows
        began = time.perf_counter()
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("CREATE INDEX ix_segments_search_vector ON segments USING gin (search_vector)")
        raw.commit()
        figures["gin_build_seconds"] = time.perf_counter() - began
        raw.set_isolation_level(0)  # VACUUM runs outside a transaction
        began = time.perf_counter()
        cur.execute("VACUUM ANALYZE recordings")
        cur.execute("VACUUM ANALYZE segments")
        figures["vacuum_analyze_seconds"] = time.perf_counter() - began
    finally:
        raw.close()
        engine.dispose()
    return url, figures


def build_sqlite(path: Path, count: int) -> tuple[str, dict[str, Any]]:
    """The same calls in an SQLite file (the triggers fill FTS5 as the rows go in)."""
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    upgrade_to_head(url)
    conn = sqlite3.connect(path)
    began, rows = time.perf_counter(), 0
    for n, (rec, segs) in enumerate(calls(count), start=1):
        conn.execute(
            "INSERT INTO recordings (id, file_path, file_name, file_size, content_sha256, status, phone_number,"
            " call_started_at, created_at, updated_at, duration_seconds, language, retry_count, needs_review)"
            " VALUES (?, ?, ?, 9952190, ?, ?, ?, ?, ?, ?, ?, 'en', 0, 0)",
            (rec["id"].hex, f"/calls/{rec['file_name']}", rec["file_name"], rec["id"].hex * 2, rec["status"],
             rec["phone_number"], _naive(rec["call_started_at"]), _naive(rec["created_at"]),
             _naive(rec["created_at"]), CALL_SECONDS),
        )  # fmt: skip
        conn.executemany(
            'INSERT INTO segments (recording_id, idx, start, "end", text, speaker) VALUES (?, ?, ?, ?, ?, ?)',
            [(rec["id"].hex, i, s, e, t, who) for i, s, e, t, who in segs],
        )
        rows += len(segs)
        if n % 250 == 0 or n == count:
            conn.commit()
            print(f"  loaded {n} recordings, {rows} segments (SQLite)", file=sys.stderr, flush=True)
    conn.execute("INSERT INTO segments_fts(segments_fts) VALUES ('optimize')")
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    return url, {"segments": rows, "load_seconds": round(time.perf_counter() - began, 1)}


def _naive(when: datetime) -> str:
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


# ---------------------------------------------------------------- queries


def queries(sessions: sessionmaker[Session]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, query, options): rare, common, phrase, prefix, with and without filters."""
    with sessions() as s:
        phone = s.execute(text("SELECT phone_number FROM recordings ORDER BY id LIMIT 1")).scalar_one()
    newest_month = EPOCH + timedelta(days=335)
    return [
        ("rare word (chargeback, 0.005% of segments)", "chargeback", {}),
        ("keyword (supervisor, 0.08%)", "supervisor", {}),
        ("keyword (refund, 0.5% with its prefix matches)", "refund", {}),
        ("common word (account)", "account", {}),
        ("very common prefix (the: the, they, there, ...)", "the", {}),
        ('phrase ("full refund")', '"full refund"', {}),
        ("prefix (refu)", "refu", {}),
        ("two words (cancel subscription)", "cancel subscription", {}),
        ("OR (chargeback OR supervisor)", "chargeback OR supervisor", {}),
        ("exclusion (refund -card)", "refund -card", {}),
        ("no match (xyzzy)", "xyzzy", {}),
        ("refund --phone (one number's calls)", "refund", {"call": CallFilter(phone=phone)}),
        ("supervisor --since (the last month)", "supervisor", {"since": newest_month}),
        ("refund --speaker caller", "refund", {"speaker": "caller"}),
        ("refund --status failed", "refund", {"statuses": ["failed"]}),
        ("chargeback --phone (one number's calls)", "chargeback", {"call": CallFilter(phone=phone)}),
    ]


def measure(sessions: sessionmaker[Session], repeat: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    every: list[float] = []
    for label, query, options in queries(sessions):
        times, result = [], None
        for run in range(repeat + 2):
            began = time.perf_counter()
            with sessions() as s:
                result = search.to_json(search.search(s, query, **options))
            if run >= 2:
                times.append((time.perf_counter() - began) * 1000)
        assert result is not None
        every += times
        figures[label] = {
            "query": query,
            "options": {k: str(v) for k, v in options.items()},
            "median_ms": round(statistics.median(times), 1),
            "p95_ms": round(_p95(times), 1),
            "recordings_shown": len(result["recordings"]),
            "more": result["more"],
            "hits_in_first": result["recordings"][0]["hit_count"] if result["recordings"] else 0,
        }
        print(f"  {figures[label]['median_ms']:8.1f} ms  p95 {figures[label]['p95_ms']:8.1f}  {label}",
              file=sys.stderr, flush=True)  # fmt: skip
    return {
        "queries": figures,
        "overall": {
            "median_ms": round(statistics.median(every), 1),
            "p95_ms": round(_p95(every), 1),
            "worst_query_median_ms": max(f["median_ms"] for f in figures.values()),
        },  # fmt: skip
    }


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def postgres_sizes(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    with engine.connect() as conn:

        def size(sql: str) -> int:
            return int(conn.execute(text(sql)).scalar_one())

        out = {
            "segments_table_bytes": size("SELECT pg_table_size('segments')"),
            "gin_index_bytes": size("SELECT pg_relation_size('ix_segments_search_vector')"),
            "search_vector_bytes": size("SELECT sum(pg_column_size(search_vector)) FROM segments"),
            "text_bytes": size("SELECT sum(pg_column_size(text)) FROM segments"),
            "server": conn.execute(text("SHOW server_version")).scalar_one(),
            "shared_buffers": conn.execute(text("SHOW shared_buffers")).scalar_one(),
        }
    engine.dispose()
    return out


def sqlite_sizes(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        fts = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'segments_fts%'").fetchone()[0]
    except sqlite3.OperationalError:  # dbstat is not compiled in everywhere
        fts = None
    out = {"file_bytes": path.stat().st_size, "fts_bytes": fts, "sqlite": sqlite3.sqlite_version}
    conn.close()
    return out


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(BENCH.parent), "log", "-1", "--format=%H"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(BENCH.parent), "diff", "--quiet", "HEAD", "--",
                                "src/transcriber/search.py", "alembic"]).returncode  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (search modified)" if dirty else "")


def _timed(what: str, build: Callable[[], tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    began = time.perf_counter()
    url, figures = build()
    figures["total_seconds"] = round(time.perf_counter() - began, 1)
    print(f"{what}: built in {figures['total_seconds']} s", file=sys.stderr, flush=True)
    return url, {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15, help="measured runs of each query (default 15)")
    parser.add_argument("--admin-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--reuse", action="store_true", help="query the database of the last run, build nothing")
    parser.add_argument("--sqlite", action="store_true", help="also measure SQLite (FTS5) with the same rows")
    parser.add_argument("--sqlite-path", type=Path, default=Path("/tmp/transcriber-bench-search.db"))
    parser.add_argument("--drop", action="store_true", help="drop the Postgres database afterwards (else kept)")
    args = parser.parse_args()

    common = {
        "recordings": args.recordings,
        "data": __doc__.split("Data: ", 1)[1].split("\n\nThen", 1)[0].replace("\n", " "),
        "repeat": args.repeat,
        "limit": 20,
        "hits_per_recording": 5,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "commit": _commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = BENCH / "results" / "search.json"
    if args.reuse:  # the load's figures are the run's that built the database
        url = make_url(args.admin_url).set(database=DATABASE).render_as_string(hide_password=False)
        load = {**json.loads(out.read_text()).get("load", {}), "from_an_earlier_run": True} if out.exists() else {}
    else:
        url, load = _timed("postgres", lambda: build_postgres(args.admin_url, args.recordings))
    engine = make_engine(url)
    measured = measure(make_session_factory(engine), args.repeat)
    engine.dispose()
    result = {**common, "database": "postgres", "load": load, "sizes": postgres_sizes(url), **measured,
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"overall median {measured['overall']['median_ms']} ms, p95 {measured['overall']['p95_ms']} ms -> {out}")
    if args.drop:
        admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        admin.dispose()
    if args.sqlite:
        url, load = _timed("sqlite", lambda: build_sqlite(args.sqlite_path, args.recordings))
        engine = make_engine(url)
        measured = measure(make_session_factory(engine), args.repeat)
        engine.dispose()
        result = {**common, "database": "sqlite", "load": load, "sizes": sqlite_sizes(args.sqlite_path), **measured,
                  "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
        out = BENCH / "results" / "search_sqlite.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"sqlite: overall median {measured['overall']['median_ms']} ms -> {out}")


if __name__ == "__main__":
    main()
