"""Benchmark: which layout of model processes and threads decodes a batch of calls fastest (groundwork for issue 15).

    .venv/bin/python bench/layouts.py                                # tiny.en, 6 calls of 2-5 min, every layout once
    .venv/bin/python bench/layouts.py --model base --repeat 2
    .venv/bin/python bench/layouts.py --calls 1 --minutes 0.5        # a smoke run, about a minute
    .venv/bin/python bench/layouts.py --device cuda --compute-type float16 --batch-size 16   # what bench/gpu.sh runs

Every layout decodes the same calls, in fresh processes that load the model once, decode a 10-s warm-up clip
(untimed), and then take calls from one shared queue, as workers of one queue do. Layouts (``--layouts``):
  naive    faster-whisper as a newcomer writes it, the issue's reference: one process,
           ``WhisperModel(path, device, compute_type).transcribe(file)`` with the library's defaults (beam 5, no
           VAD, previous-text prompt on, no word timings; ``cpu_threads`` left to CTranslate2, which takes the cores)
  single   the product's decode path in one process with ``--threads`` threads (default: all cores)
  split    the product's decode path in ``--split`` processes (default 2) with cores / N threads each
  batched  the product's decode path with faster-whisper's BatchedInferencePipeline (``WHISPER_BATCH_SIZE=--batch-size``,
           default 8), one process, ``--threads`` threads
"The product's decode path" is what the model process runs for one request (``model_process._serve``):
``audio.decode_sides`` and ``check_complete`` on the file, then ``transcriber.decoding.decode`` (main pass, coverage,
repair) with ``decode_options(settings)`` and the model loaded as ``model_config_for(settings)`` says, where
``settings`` is ``Settings()`` (so WHISPER_* variables count; .env does not) with only the model, device, compute
type, threads and batch size of the layout set. No queue, no database, no worker: decode only.

Calls are espeak-ng speech (tests/speech.py) of the keyed sentences (two words of their own each), seeded, at one
speed per call (140-175 words/min) with pauses of 0.5-2.5 s, ``--minutes`` long on average (from 0.6x to 1.4x, in
shuffled order), written once as .m4a in a temp folder. ``--repeat N`` runs every layout N times, the order
reversed every other round, so drift on the machine falls on all alike; the table gives medians.

Columns: wall = from releasing the warmed-up processes until the last call is done; RTF = audio seconds / wall
(higher is faster; audio-hours per hour); CPU = CPU seconds of the decoding processes over that time; other CPU =
what the rest of the machine used meanwhile (psutil, steal included): above 5 % of the machine the run is marked
"not idle"; peak RSS = the largest resident size of one decoding process (``ru_maxrss``; model load included);
keywords heard = keyed sentences of which one of their two words appears in the segments overlapping them;
sentences heard = sentences with >= 60 % of their words there (``speech.sentences_missing``); WER = word-level edit
distance to the script / script words (``completeness.words``, ``completeness.edits``).
Writes bench/results/layouts.<model>.json (machine, settings, every run and call) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

from completeness import edits, words  # noqa: E402

from speech import KEYED_SENTENCES, Said, sentences_missing, silence, speak, write_audio  # noqa: E402

LAYOUTS = ("naive", "single", "split", "batched")
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Layout:
    key: str
    label: str
    processes: int
    threads: int  # 0: CTranslate2 chooses
    product: bool
    batch_size: int = 0


@dataclass
class Call:
    path: str
    seconds: float
    said: list[Said]
    keys: list[str]  # "a|b" per sentence of ``said``


# ---------------------------------------------------------------- the calls


def build_calls(folder: Path, count: int, minutes: float, seed: int) -> tuple[list[Call], str]:
    """``count`` keyed calls as .m4a files in ``folder`` (and a 10-s warm-up clip); lengths 0.6x-1.4x ``minutes``."""
    rng = random.Random(seed)
    spread = [0.6 + 0.8 * i / (count - 1) for i in range(count)] if count > 1 else [1.0]
    rng.shuffle(spread)
    spoken: dict[tuple[str, int], np.ndarray] = {}
    calls = []
    for index, share in enumerate(spread):
        speed = rng.choice([140, 150, 160, 175])
        parts: list[np.ndarray] = []
        said: list[Said] = []
        keys: list[str] = []
        at, order = 0.0, list[tuple[str, str]]()
        while at < share * minutes * 60:
            if not order:  # every sentence once per round, in a new order, never the same twice in a row
                order = rng.sample(KEYED_SENTENCES, len(KEYED_SENTENCES))
                if keys and order[0][0] == keys[-1]:
                    order.reverse()
            key, text = order.pop()
            voiced = spoken.get((text, speed))
            if voiced is None:
                voiced = spoken[(text, speed)] = speak(text, speed=speed)
            pause = rng.uniform(0.5, 2.5)
            said.append(Said(at, at + len(voiced) / SAMPLE_RATE, text))
            keys.append(key)
            parts += [voiced, silence(pause)]
            at += len(voiced) / SAMPLE_RATE + pause
        path = write_audio(folder / f"call{index}.m4a", np.concatenate(parts))
        calls.append(Call(str(path), at, said, keys))
    warm = np.concatenate([speak(text) for _, text in KEYED_SENTENCES[:2]])
    return calls, str(write_audio(folder / "warmup.m4a", warm[: 10 * SAMPLE_RATE]))


def score(call: Call, segments: list[tuple[float, float, str]]) -> dict[str, Any]:
    """Keywords and sentences heard where they were said, and WER against the script."""
    segments = sorted(segments)
    heard_keys = 0
    for sentence, key in zip(call.said, call.keys, strict=True):
        near = {
            w for a, b, text in segments if b > sentence.start - 0.5 and a < sentence.end + 0.5 for w in words(text)
        }
        heard_keys += any(word in near for word in key.split("|"))
    found = [_Seg(a, b, text) for a, b, text in segments]
    missing = sentences_missing(call.said, found)
    truth = words(" ".join(s.text for s in call.said))
    text = " ".join(t.strip() for _, _, t in segments)
    return {
        "sentences": len(call.said),
        "keywords_heard": heard_keys,
        "sentences_heard": len(call.said) - len(missing),
        "truth_words": len(truth),
        "edits": edits(truth, words(text)),
        "text": text,
    }


@dataclass(frozen=True)
class _Seg:
    start: float
    end: float
    text: str


# ---------------------------------------------------------------- the decoding processes


def worker(spec: dict[str, Any], warmup: str, jobs: Any, results: Any, start: Any) -> None:
    """One decoding process: load, warm up, then decode calls from ``jobs`` until ``None``."""
    began = time.perf_counter()
    model = _load(spec)
    decode_file = _naive if spec["options"] is None else _product
    loaded = time.perf_counter()
    decode_file(model, warmup, spec)
    results.put({"type": "ready", "pid": os.getpid(), "load_seconds": loaded - began})
    start.wait()
    cpu = time.process_time()
    while (job := jobs.get()) is not None:
        index, path = job
        file_began = time.perf_counter()
        segments = decode_file(model, path, spec)
        results.put({"type": "done", "index": index, "seconds": time.perf_counter() - file_began, "segments": segments})
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    results.put({"type": "exit", "pid": os.getpid(), "cpu_seconds": time.process_time() - cpu, "peak_rss_mb": peak_kb / 1024})  # fmt: skip


def _load(spec: dict[str, Any]) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(spec["model"], device=spec["device"], compute_type=spec["compute_type"], cpu_threads=spec["threads"])  # fmt: skip


def _naive(model: Any, path: str, spec: dict[str, Any]) -> list[tuple[float, float, str]]:
    import ctranslate2

    ctranslate2.set_random_seed(spec["seed"])  # its temperature fallback samples; the product's decode seeds itself
    segments, _ = model.transcribe(path)
    return [(s.start, s.end, s.text) for s in segments]


def _product(model: Any, path: str, spec: dict[str, Any]) -> list[tuple[float, float, str]]:
    """What ``model_process._serve`` does with one request, without the wire."""
    from transcriber.audio import SAMPLE_RATE, check_complete, decode_sides, probe_duration
    from transcriber.decoding import decode

    options = dict(spec["options"])
    speakers = options.pop("speakers")
    sides = decode_sides(path, options.pop("channels"))
    check_complete(sides[0].shape[0] / SAMPLE_RATE, probe_duration(path))
    found: list[Any] = []
    decode(model, sides, options, found.append, speakers=speakers)
    return [(s.start, s.end, s.text) for s in found]


def run_layout(layout: Layout, spec: dict[str, Any], calls: list[Call], warmup: str) -> dict[str, Any]:
    """Decode every call in ``layout``'s processes; wall, CPU, memory and each call's segments."""
    ctx = mp.get_context("spawn")  # fresh processes: nothing inherited, each loads its own model (STYLE 5)
    jobs, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=worker, args=(spec, warmup, jobs, results, start)) for _ in range(layout.processes)]
    for proc in procs:
        proc.start()
    try:
        ready = [_get(results, procs) for _ in procs]
        for index, call in enumerate(calls):
            jobs.put((index, call.path))
        for _ in procs:
            jobs.put(None)
        load_before, busy_before, mine_before = os.getloadavg(), _busy_cpu(), time.process_time()
        began = time.perf_counter()
        start.set()
        done: dict[int, dict[str, Any]] = {}
        exits: list[dict[str, Any]] = []
        while len(exits) < len(procs):
            message = _get(results, procs)
            if message["type"] == "done":
                done[message["index"]] = {**message, "at": time.perf_counter() - began}
            else:
                exits.append(message)
        wall = max(d["at"] for d in done.values())
        busy = _busy_cpu() - busy_before
        cpu = sum(e["cpu_seconds"] for e in exits)
        mine = time.process_time() - mine_before
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    audio = sum(c.seconds for c in calls)
    other = max(busy - cpu - mine, 0.0)
    return {
        "layout": layout.key,
        "wall_seconds": round(wall, 2),
        "audio_seconds": round(audio, 1),
        "rtf": round(audio / wall, 2),
        "cpu_seconds": round(cpu, 1),
        "other_cpu_seconds": round(other, 1),
        "idle": other <= 0.05 * wall * (os.cpu_count() or 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "load_seconds": [round(r["load_seconds"], 2) for r in ready],
        "peak_rss_mb": [round(e["peak_rss_mb"], 1) for e in exits],
        "calls": [
            {"index": i, "seconds": round(done[i]["seconds"], 2), **score(call, done[i]["segments"])}
            for i, call in enumerate(calls)
        ],
    }


def _get(results: Any, procs: list[Any]) -> dict[str, Any]:
    """The next message, or a clear error when a decoding process died instead of answering."""
    import queue

    while True:
        try:
            return dict(results.get(timeout=5))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise SystemExit(f"a decoding process exited with code {dead[0].exitcode}: see its traceback above") from None  # fmt: skip


def _busy_cpu() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0))  # fmt: skip


# ---------------------------------------------------------------- layouts and settings


def layouts(args: argparse.Namespace) -> dict[str, Layout]:
    cores = os.cpu_count() or 1
    threads = args.threads or cores
    split_threads = max(1, cores // args.split)
    return {
        "naive": Layout("naive", "naive faster-whisper loop, library defaults (no VAD)", 1, 0, product=False),
        "single": Layout("single", f"product defaults, 1 process x {threads} threads", 1, threads, product=True),
        "split": Layout(
            "split",
            f"product defaults, {args.split} processes x {split_threads} thread{'s' * (split_threads > 1)}",
            args.split,
            split_threads,
            product=True,
        ),  # fmt: skip
        "batched": Layout(
            "batched",
            f"product, batched pipeline (batch {args.batch_size}), 1 process x {threads} threads",
            1,
            threads,
            product=True,
            batch_size=args.batch_size,
        ),  # fmt: skip
    }


def spec_for(layout: Layout, args: argparse.Namespace) -> dict[str, Any]:
    """How a decoding process of ``layout`` loads the model and decodes, from the product's own settings code."""
    from transcriber.runner import decode_options, model_config_for
    from transcriber.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        whisper_model=args.model,
        whisper_device=args.device,
        whisper_compute_type=args.compute_type,
        whisper_cpu_threads=layout.threads,
        whisper_batch_size=layout.batch_size,
    )
    config = model_config_for(settings)
    return {
        "model": config.model,
        "device": config.device,
        "compute_type": config.compute_type,
        "threads": config.cpu_threads if layout.product else 0,
        "options": decode_options(settings) if layout.product else None,
        "seed": args.seed,
    }


# ---------------------------------------------------------------- report


def totals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of one layout; completeness from the first run (and whether the others agree)."""
    first = runs[0]["calls"]

    def add(key: str, calls: list[dict[str, Any]]) -> int:
        return sum(int(c[key]) for c in calls)

    return {
        "runs": len(runs),
        "wall_seconds": round(statistics.median(r["wall_seconds"] for r in runs), 2),
        "wall_spread": [min(r["wall_seconds"] for r in runs), max(r["wall_seconds"] for r in runs)],
        "rtf": round(statistics.median(r["rtf"] for r in runs), 2),
        "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs), 1),
        "other_cpu_seconds": max(r["other_cpu_seconds"] for r in runs),
        "all_idle": all(r["idle"] for r in runs),
        "peak_rss_mb": max(max(r["peak_rss_mb"]) for r in runs),
        "processes": len(runs[0]["peak_rss_mb"]),
        "load_seconds": max(max(r["load_seconds"]) for r in runs),
        "sentences": add("sentences", first),
        "keywords_heard": add("keywords_heard", first),
        "sentences_heard": add("sentences_heard", first),
        "wer": round(add("edits", first) / max(add("truth_words", first), 1), 4),
        "completeness_same_every_run": all([c["text"] for c in r["calls"]] == [c["text"] for c in first] for r in runs),
    }


def table(chosen: dict[str, Layout], total: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| layout | wall (median) | RTF | vs naive wall | CPU-s | other CPU-s | peak RSS per process | keywords heard | sentences heard | WER | model load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    naive = total.get("naive")
    for key, layout in chosen.items():
        t = total[key]
        vs = f"{t['wall_seconds'] / naive['wall_seconds']:.2f}x" if naive else "n/a"
        spread = f" ({t['wall_spread'][0]:.1f}-{t['wall_spread'][1]:.1f})" if t["runs"] > 1 else ""
        idle = "" if t["all_idle"] else " (not idle)"
        rss = f"{t['peak_rss_mb']:.0f} MB" + (f" (x{t['processes']})" if t["processes"] > 1 else "")
        lines.append(
            f"| {layout.label} (`{key}`) | {t['wall_seconds']:.1f} s{spread} | {t['rtf']:.1f} | {vs} "
            f"| {t['cpu_seconds']:.1f} | {t['other_cpu_seconds']:.1f}{idle} | {rss} "
            f"| {t['keywords_heard']}/{t['sentences']} | {t['sentences_heard']}/{t['sentences']} | {t['wer']:.1%} "
            f"| {t['load_seconds']:.1f} s |"
        )
    return "\n".join(lines)


def machine(args: argparse.Namespace, specs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import ctranslate2
    import faster_whisper

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)  # fmt: skip
    gpus = None
    if args.device == "cuda":
        gpus = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()  # fmt: skip
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None),
        "processor": platform.processor() or platform.machine(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus,
        "python": platform.python_version(),
        "ctranslate2": ctranslate2.__version__,
        "faster_whisper": faster_whisper.__version__,
        "commit": commit.stdout.strip() or None,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "model_path": next(iter(specs.values()))["model"],
        "device": next(iter(specs.values()))["device"],
        "compute_type": next(iter(specs.values()))["compute_type"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en", help="tiny.en or base (the product's default), or a model folder")
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=3.5, help="mean call length (calls 0.6x-1.4x of it)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the layout order is reversed every other round")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated, of {', '.join(LAYOUTS)}")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compute-type", default="auto", help="auto: int8 on cpu, float16 on cuda (as the product)")
    parser.add_argument("--threads", type=int, default=0, help="threads of single and batched (0: all cores)")
    parser.add_argument("--split", type=int, default=2, help="processes of the split layout (cores / N threads each)")
    parser.add_argument("--batch-size", type=int, default=8, help="WHISPER_BATCH_SIZE of the batched layout")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="default bench/results/layouts.<model>[.<device>].json")
    args = parser.parse_args()
    every = layouts(args)
    unknown = set(args.layouts.split(",")) - set(every)
    if unknown:
        parser.error(f"unknown --layouts {sorted(unknown)}; choose from {', '.join(every)}")
    chosen = {key: every[key] for key in args.layouts.split(",")}
    specs = {key: spec_for(layout, args) for key, layout in chosen.items()}
    name = Path(args.model).name if "/" in args.model else args.model
    out = args.out or BENCH / "results" / f"layouts.{name}{'' if args.device == 'cpu' else '.' + args.device}.json"
    facts = machine(args, specs) | {"load_average_before": os.getloadavg()}
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        calls, warmup = build_calls(Path(tmp), args.calls, args.minutes, args.seed)
        audio = sum(c.seconds for c in calls)
        print(f"{len(calls)} calls, {audio:.0f} s of audio, {sum(len(c.said) for c in calls)} sentences", file=sys.stderr)  # fmt: skip
        for round_ in range(args.repeat):
            order = list(chosen) if round_ % 2 == 0 else list(reversed(chosen))
            for key in order:
                result = run_layout(chosen[key], specs[key], calls, warmup)
                runs[key].append({"round": round_, **result})
                print(f"round {round_ + 1} {key:8} {result['wall_seconds']:7.1f} s  RTF {result['rtf']:5.1f}  CPU {result['cpu_seconds']:6.1f} s  other {result['other_cpu_seconds']:5.1f} s", file=sys.stderr)  # fmt: skip
        script = [{"path": Path(c.path).name, "seconds": round(c.seconds, 1), "sentences": len(c.said)} for c in calls]
    facts["load_average_after"] = os.getloadavg()
    total = {key: totals(rows) for key, rows in runs.items()}
    report = {
        "machine": facts,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "layouts": {key: {**asdict(layout), "spec": specs[key]} for key, layout in chosen.items()},
        "calls": script,
        "totals": total,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(chosen, total))
    print(f"\n{len(calls)} calls, {audio:.0f} s of audio; wrote {out}")


if __name__ == "__main__":
    main()
