"""Benchmark: end to end, not just the decoder (issue 15, item 5), on both deployments.

    .venv/bin/python bench/latency.py                                  # both parts, full size: ~11 min on 2 cores
    .venv/bin/python bench/latency.py --only drop                      # (i) only, ~3 min
    .venv/bin/python bench/latency.py --only batch --rounds 1 --calls 2 --minutes 0.5   # a smoke run of (ii)

Deployments (``--deployments``), both started as they ship, with only ``WHISPER_MODEL`` (``--model``, default
tiny.en, the offline package) and ``DIARIZE=off`` set (torch is installed here; the naive loop finds no speakers):
  embedded  ``transcriber run`` in a fresh temp folder, no DATABASE_URL / CELERY_BROKER_URL: SQLite and the folder
            broker under ./data, the watcher in-process, worker and beat as its children
  postgres  ``transcriber worker`` (no arguments: the product's default pool and concurrency), ``transcriber beat``
            and ``transcriber watch`` on a fresh Postgres database (dropped afterwards) and Redis database 14
            (flushed first; refused if another client uses it)
Every timing setting is the product's default (WATCH_SETTLE_SECONDS 5, WATCH_POLL_SECONDS 30, DISPATCH_INTERVAL 2,
...). A file is dropped as a finished upload arrives: copied into a staging folder beside the watched folder, then
renamed into it, once every worker logged ``ready.`` and every model process its ``model ... loaded`` line (so a
model that is warm before the first file is what is measured; a deployment whose models do not load before a
file comes is waited for ``--warm-timeout`` s, then measured as it is, and the result says how many models
had loaded at the first drop), and once the machine is idle (no pytest running,
``psutil.cpu_percent`` over 3 s under 15 %; the result says whether it was).

(i) ``drop``: ``--repeats`` (5) short calls (``--clip-seconds`` 10 of espeak speech, each different), dropped one
    at a time into the same running services, each after the one before completed. Figure: time from the rename to
    ``recordings.finished_at`` minus the decode time of that file. The decode time is measured beforehand by the
    product's own decode path, warm, in-process (``bench/layouts.py``'s ``single`` layout: ``audio.decode_sides``,
    ``check_complete``, ``decoding.decode`` with ``decode_options(Settings())``, after an untimed warm-up clip) with
    the threads the deployment's model process has (cores / the worker's concurrency, read from Celery's banner).
    Median and max over the repeats; target <= 2 s on both deployments. Also where the time went, from the rows:
    registered (``recordings.created_at``), claimed (``attempts.started_at``), attempt end, completed.
(ii) ``batch``: ``--calls`` (6) calls of ``--minutes`` (3.5) on average (``bench/layouts.py``'s keyed espeak calls,
    0.6x-1.4x that long), all dropped at once, against the naive faster-whisper loop over the same files
    (``bench/layouts.py``'s ``naive`` layout: one process, ``WhisperModel(path, device, compute_type)
    .transcribe(file)`` with the library's defaults, no VAD, CTranslate2 choosing the threads; model loaded and
    warmed up first). ``--rounds`` (3) paired rounds, the order reversed every other round; figures are medians.
    Product wall = rename to the last ``finished_at``; naive wall = first call started to last call done in the
    warm loop (also given with its model load). Target: product / naive <= 0.8 in one run, and no sentence the
    loop heard (``speech.sentences_missing``: >= 60 % of its words in the segments overlapping it) lost by the
    product in any round.

Writes bench/results/latency.json (machine facts, settings, every repeat and round) and prints markdown tables.
Exit code 1 if a part failed, 130 if interrupted; every process started is stopped, every database dropped.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import layouts  # noqa: E402
from pipeline_vs_raw import CpuMeter  # noqa: E402
from split import (  # noqa: E402
    AudioCache,
    Call,
    Seg,
    Services,
    TreeSampler,
    _kill_all,
    _on_sigterm,
    machine_facts,
    preflight,
    snapshot_code,
    wait_idle,
    work_folder,
)

from speech import sentences_missing  # noqa: E402

DEPLOYMENTS = ("embedded", "postgres")
PARTS = ("drop", "batch")


# ---------------------------------------------------------------- decode times, in-process


def _spec_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(model=args.model, device="cpu", compute_type="auto", seed=args.seed)


def as_layout_call(call: Call) -> layouts.Call:
    return layouts.Call(str(call.path), call.seconds, call.said, call.keys)


def decode_times(args: argparse.Namespace, clips: Sequence[Call], warmup: Call) -> dict[int, list[float]]:
    """Seconds the product's decode path takes per clip, warm, with 1 thread and with every core."""
    out = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        layout = layouts.Layout("single", f"product decode path, {threads} thread(s)", 1, threads, product=True)
        spec = layouts.spec_for(layout, _spec_args(args))
        wait_idle(f"decoding in-process ({threads} threads)", args.idle_wait)
        result = layouts.run_layout(layout, spec, [as_layout_call(c) for c in clips], str(warmup.path))
        out[threads] = [round(c["seconds"], 3) for c in result["calls"]]
    return out


# ---------------------------------------------------------------- (i) one short call at a time


def drop_part(args: argparse.Namespace, work: Path, audio: AudioCache) -> dict[str, Any]:
    clips = [audio.call(f"clip{i}", args.clip_seconds, seed=args.seed + i) for i in range(args.repeats)]
    warmup = audio.call("clipwarm", args.clip_seconds, seed=args.seed + 999)
    decoded = decode_times(args, clips, warmup)
    results: dict[str, Any] = {"clips": [{"file": c.path.name, "seconds": round(c.seconds, 2)} for c in clips],
                               "decode_seconds_by_threads": decoded}  # fmt: skip
    for kind in args.deployments:
        print(f"-- drop: {kind}", flush=True)
        with Services(args, work, f"drop-{kind}", {}, kind=kind, concurrency=0) as svc:
            threads = max(1, (os.cpu_count() or 1) // svc.concurrency)
            repeats = []
            loaded_at_first_drop = None
            for i, clip in enumerate(clips):
                staged = svc.stage([clip])
                idle = wait_idle(f"drop {i + 1} ({kind})", args.idle_wait)
                began = svc.drop(staged)
                if loaded_at_first_drop is None:
                    loaded_at_first_drop = svc.loaded_before_drop
                svc.wait_settled(i + 1, 120)
                rows = svc.collect(began)
                [rec] = [r for r in rows.recordings if r["file_name"] == clip.path.name]
                att = next(a for a in rows.attempts if a["file_name"] == clip.path.name)  # the first one
                decode = decoded[threads if threads in decoded else max(decoded)][i]
                repeats.append({
                    "file": clip.path.name, "status": rec["status"], "idle_before": idle,
                    "to_completed_seconds": rec["completed_after"], "decode_seconds": decode,
                    "overhead_seconds": round(rec["completed_after"] - decode, 3),
                    "registered_after": rec["registered_after"], "claimed_after": att["started_after"],
                    "attempt_seconds": att["seconds"], "attempt_ended_after": att["finished_after"],
                })  # fmt: skip
                print(f"   {i + 1}: {rec['completed_after']:.2f} s to completed, decode {decode:.2f} s, "
                      f"registered {rec['registered_after']:.2f}, claimed {att['started_after']:.2f}", flush=True)  # fmt: skip
                time.sleep(2)
            overheads = [r["overhead_seconds"] for r in repeats]
            results[kind] = {
                "settings": svc.settings(), "worker_concurrency": svc.concurrency, "pool": svc.pool,
                "model_threads": threads, "models_warm_after_ready_seconds": svc.warm_seconds,
                "models_loaded_at_first_drop": loaded_at_first_drop,
                "repeats": repeats, "median_overhead_seconds": round(statistics.median(overheads), 3),
                "max_overhead_seconds": round(max(overheads), 3),
                "median_to_completed_seconds": round(statistics.median(r["to_completed_seconds"] for r in repeats), 3),
                "all_idle": all(r["idle_before"]["idle"] for r in repeats),
            }  # fmt: skip
    results["targets"] = {f"{kind}_overhead_at_most_2s": results[kind]["max_overhead_seconds"] <= 2.0
                          for kind in args.deployments}  # fmt: skip
    return results


# ---------------------------------------------------------------- (ii) a batch against the naive loop


@contextlib.contextmanager
def keeping_segments() -> Iterator[None]:
    """``layouts.run_layout`` scores each call and drops its segments; keep them too, for the per-sentence check."""
    score = layouts.score
    layouts.score = lambda call, segments: {**score(call, segments), "segments": sorted(segments)}  # type: ignore[assignment]
    try:
        yield
    finally:
        layouts.score = score


def heard_sets(calls: Sequence[layouts.Call], segments: Sequence[Sequence[Seg]]) -> set[tuple[int, int]]:
    """(call, sentence) pairs missing: fewer than 60 % of the sentence's words in the segments overlapping it."""
    out = set()
    for c, (call, segs) in enumerate(zip(calls, segments, strict=True)):
        lost = {id(s) for s in sentences_missing(call.said, segs)}
        out |= {(c, i) for i, s in enumerate(call.said) if id(s) in lost}
    return out


def naive_round(args: argparse.Namespace, calls: list[layouts.Call], warmup: str) -> dict[str, Any]:
    layout = layouts.Layout("naive", "naive faster-whisper loop, library defaults (no VAD)", 1, 0, product=False)
    spec = layouts.spec_for(layout, _spec_args(args))
    idle = wait_idle("the naive loop", args.idle_wait)
    with keeping_segments():
        result = layouts.run_layout(layout, spec, calls, warmup)
    segments = [[Seg(*s) for s in c.pop("segments")] for c in result["calls"]]
    return {"result": result, "idle_before": idle, "missing": heard_sets(calls, segments)}


def product_round(args: argparse.Namespace, work: Path, kind: str, calls: list[layouts.Call]) -> dict[str, Any]:
    as_calls = [Call(Path(c.path), c.seconds, c.said, c.keys) for c in calls]
    with Services(args, work, f"batch-{kind}", {}, kind=kind, concurrency=0) as svc:
        staged = svc.stage(as_calls)
        idle = wait_idle(f"the batch ({kind})", args.idle_wait)
        sampler = TreeSampler(svc.pids())
        sampler.mark()
        sampler.start()
        meter = CpuMeter()
        began = svc.drop(staged)
        try:
            svc.wait_settled(len(calls), max(300.0, sum(c.seconds for c in calls)))
        finally:
            machine = meter.stop()
            sampler.stop()
        rows = svc.collect(began)
        settings, concurrency, pool, loaded = svc.settings(), svc.concurrency, svc.pool, svc.loaded_before_drop
    by_name = {r["file_name"]: r for r in rows.recordings}
    segments = [rows.segments[Path(c.path).name] for c in calls]
    scored = [layouts.score(call, [(s.start, s.end, s.text) for s in segs]) for call, segs in zip(calls, segments, strict=True)]  # fmt: skip
    return {
        "settings": settings, "worker_concurrency": concurrency, "pool": pool, "idle_before": idle,
        "models_loaded_at_drop": loaded, "machine_cpu_seconds": machine, "pytest_seen_during": sampler.pytest_seen,
        "idle_during": not sampler.pytest_seen and machine["others"] + machine["steal"] <= 0.05 * machine["wall"] * (os.cpu_count() or 1),
        "wall_seconds": round(max(r["completed_after"] or 0 for r in rows.recordings), 2),
        "first_registered_after": min(r["registered_after"] for r in rows.recordings),
        "statuses": sorted({r["status"] for r in rows.recordings}),
        "cpu_seconds_by_process": sampler.cpu_by_kind(),
        "sentences": sum(s["sentences"] for s in scored), "sentences_heard": sum(s["sentences_heard"] for s in scored),
        "wer": round(sum(s["edits"] for s in scored) / max(sum(s["truth_words"] for s in scored), 1), 4),
        "calls": [{"file": Path(c.path).name, "completed_after": by_name[Path(c.path).name]["completed_after"],
                   **{k: v for k, v in s.items() if k != "text"}} for c, s in zip(calls, scored, strict=True)],
        "missing": heard_sets(calls, segments),
    }  # fmt: skip


def batch_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    folder = work / "batch-calls"
    folder.mkdir()
    calls, warmup = layouts.build_calls(folder, args.calls, args.minutes, args.seed)
    audio = sum(c.seconds for c in calls)
    print(f"-- batch: {len(calls)} calls, {audio:.0f} s of audio", flush=True)
    rounds = []
    for r in range(args.rounds):
        order = ["naive", *args.deployments]
        if r % 2:
            order.reverse()
        this: dict[str, Any] = {"round": r, "order": order}
        for side in order:
            this[side] = naive_round(args, calls, warmup) if side == "naive" else product_round(args, work, side, calls)  # fmt: skip
            wall = this[side]["result"]["wall_seconds"] if side == "naive" else this[side]["wall_seconds"]
            print(f"   round {r + 1} {side:9} {wall:7.1f} s", flush=True)
        naive = this["naive"]
        for kind in args.deployments:
            side = this[kind]
            side["ratio_to_naive"] = round(side["wall_seconds"] / naive["result"]["wall_seconds"], 3)
            side["lost_vs_naive"] = sorted(side["missing"] - naive["missing"])
        rounds.append(this)
    summary: dict[str, Any] = {"calls": len(calls), "audio_seconds": round(audio, 1),
                               "naive_wall_median": _median(r["naive"]["result"]["wall_seconds"] for r in rounds),
                               "naive_load_seconds": max(max(r["naive"]["result"]["load_seconds"]) for r in rounds)}  # fmt: skip
    for kind in args.deployments:
        summary[kind] = {
            "wall_median": _median(r[kind]["wall_seconds"] for r in rounds),
            "ratio_median": _median(r[kind]["ratio_to_naive"] for r in rounds),
            "ratios": [r[kind]["ratio_to_naive"] for r in rounds],
            "lost_vs_naive": sum(len(r[kind]["lost_vs_naive"]) for r in rounds),
            "sentences_heard": [r[kind]["sentences_heard"] for r in rounds],
            "wer": [r[kind]["wer"] for r in rounds],
            "all_idle": all(r[kind]["idle_during"] and r[kind]["idle_before"]["idle"] for r in rounds),
        }
    summary["naive_all_idle"] = all(r["naive"]["result"]["idle"] and r["naive"]["idle_before"]["idle"] for r in rounds)
    summary["naive_sentences_heard"] = [
        sum(c["sentences_heard"] for c in r["naive"]["result"]["calls"]) for r in rounds
    ]
    summary["sentences"] = sum(len(c.said) for c in calls)
    for this in rounds:  # sets are not JSON
        for side in ("naive", *args.deployments):
            this[side]["missing"] = sorted(this[side]["missing"])
    targets = {}
    for kind in args.deployments:
        targets[f"{kind}_wall_at_most_0.8x_naive"] = summary[kind]["ratio_median"] <= 0.8
        targets[f"{kind}_loses_no_sentence_the_loop_hears"] = summary[kind]["lost_vs_naive"] == 0
    return {"summary": summary, "rounds": rounds, "targets": targets,
            "files": [{"file": Path(c.path).name, "seconds": round(c.seconds, 1), "sentences": len(c.said)} for c in calls]}  # fmt: skip


def _median(values: Any) -> float:
    return round(statistics.median(list(values)), 3)


# ---------------------------------------------------------------- report and main


def tables(results: dict[str, Any], deployments: Sequence[str]) -> str:
    out = []
    if "drop" in results:
        d = results["drop"]
        out += ["\n### (i) a short call dropped into running services: time to completed minus decode time",
                "| deployment | worker | model threads | models loaded at the first drop | decode (median) | drop to completed (median) | overhead median | overhead max (first drop) | registered / claimed after (median) | idle |",
                "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for kind in deployments:
            if kind not in d:
                continue
            r = d[kind]
            reps = r["repeats"]
            out.append(f"| {kind} | {r['pool']} x {r['worker_concurrency']} | {r['model_threads']} "
                       f"| {r['models_loaded_at_first_drop']} of {r['worker_concurrency']} "
                       f"| {_median(x['decode_seconds'] for x in reps):.2f} s | {r['median_to_completed_seconds']:.2f} s "
                       f"| {r['median_overhead_seconds']:.2f} s | {r['max_overhead_seconds']:.2f} s ({reps[0]['overhead_seconds']:.2f} s) "
                       f"| {_median(x['registered_after'] for x in reps):.2f} / {_median(x['claimed_after'] for x in reps):.2f} s "
                       f"| {'yes' if r['all_idle'] else 'NO'} |")  # fmt: skip
        out.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in d["targets"].items()))
    if "batch" in results:
        b = results["batch"]
        s = b["summary"]
        out += [f"\n### (ii) {s['calls']} calls, {s['audio_seconds']:.0f} s of audio: product defaults vs the naive loop ({len(b['rounds'])} paired rounds)",
                "| side | wall (median) | / naive (median; each round) | sentences heard (each round) | lost vs the loop | idle |",
                "|---|---|---|---|---|---|",
                f"| naive loop (warm; model load {s['naive_load_seconds']:.1f} s more) | {s['naive_wall_median']:.1f} s | 1.00 | {s['naive_sentences_heard']} of {s['sentences']} | - | {'yes' if s['naive_all_idle'] else 'NO'} |"]  # fmt: skip
        for kind in deployments:
            if kind in s:
                k = s[kind]
                out.append(f"| {kind} | {k['wall_median']:.1f} s | {k['ratio_median']:.2f} ({', '.join(f'{x:.2f}' for x in k['ratios'])}) "
                           f"| {k['sentences_heard']} of {s['sentences']} | {k['lost_vs_naive']} | {'yes' if k['all_idle'] else 'NO'} |")  # fmt: skip
        out.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in b["targets"].items()))
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    parser.add_argument("--deployments", default=",".join(DEPLOYMENTS), help="comma-separated, of embedded, postgres")
    parser.add_argument("--model", default="tiny.en", help="WHISPER_MODEL (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="(i): short calls dropped one at a time")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="(i): length of each short call")
    parser.add_argument("--calls", type=int, default=6, help="(ii): calls in the batch")
    parser.add_argument("--minutes", type=float, default=3.5, help="(ii): mean call length (0.6x-1.4x of it)")
    parser.add_argument("--rounds", type=int, default=3, help="(ii): paired rounds")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--idle-wait", type=float, default=1800, help="seconds to wait for an idle machine before each timed run")  # fmt: skip
    parser.add_argument("--warm-timeout", type=float, default=30, help="seconds to wait for the models to load")
    parser.add_argument("--postgres-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="FLUSHED before each run")
    parser.add_argument("--audio-cache", type=Path, default=Path(tempfile.gettempdir()) / "transcriber-bench-audio")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/latency.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, transcripts)")
    parser.add_argument("--live-code", action="store_true", help="run the checkout's code as it is at each start, "
                        "instead of a snapshot taken when the bench starts")  # fmt: skip
    args = parser.parse_args(argv)
    args.deployments = [d.strip() for d in args.deployments.split(",") if d.strip()]
    if set(args.deployments) - set(DEPLOYMENTS):
        parser.error(f"--deployments: choose from {', '.join(DEPLOYMENTS)}")
    args.parts = [p for p in PARTS if not args.only or p in args.only]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    atexit.register(_kill_all)
    preflight(args)
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    began = time.monotonic()
    with work_folder(args.keep) as work:
        machine = {"code": snapshot_code(args, work), **machine_facts(args)}
        audio = AudioCache(args.audio_cache)
        for part in args.parts:
            print(f"== {part} ...", flush=True)
            try:
                results[part] = (drop_part(args, work, audio) if part == "drop" else batch_part(args, work)) | {
                    "date": datetime.now(UTC).isoformat(timespec="seconds")
                }
            except KeyboardInterrupt:
                errors[part] = "interrupted (Ctrl-C or SIGTERM)"
                break
            except Exception as exc:
                errors[part] = f"{type(exc).__name__}: {exc}"
                print(f"== {part} FAILED: {errors[part][:4000]}", flush=True)
            finally:
                _kill_all()
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = args.out or BENCH / "results" / "latency.json"
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(out.read_text()).get("parts", {})
    parts = {**previous, **{k: {**v, "machine": machine} for k, v in results.items()}}
    report = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "parts": parts, "errors": errors}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(tables(results, args.deployments))
    print(f"\n{time.monotonic() - began:.0f} s in all; wrote {out}")
    if any(e.startswith("interrupted") for e in errors.values()):
        return 130
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
