"""Benchmark: which decoding settings hear every sentence, invent nothing and stay fast, measured in one run.

    .venv/bin/python bench/completeness.py                        # base model, the full test set (~34 min of audio)
    .venv/bin/python bench/completeness.py --quick --model tiny.en   # a smoke run: one call of each kind
    .venv/bin/python bench/completeness.py --configs plain,defaults,open-repair

Every configuration decodes the same files, interleaved (for each file: for each configuration) so machine drift
hits all alike, with ``ctranslate2.set_random_seed(--seed)`` before each decode (temperature fallback samples),
after one untimed warm-up decode.
"plain" is ``model.transcribe(samples, beam_size=5, vad_filter=True)`` (faster-whisper as it comes otherwise);
every other row runs the product's own decode path, ``transcriber.decoding.decode``. "defaults" is built from
``Settings`` at run time (so WHISPER_* environment variables count; the options used are in the results file).
The test set is written as .m4a/.wav files in a temp folder and read back with ``transcriber.audio.decode``:
  real voices   calls of the recorded voices in shared/audio (``real_voice_call``: 4 x 400 s; --quick 1 x 120 s)
  espeak        scripted calls of ~12 espeak-ng sentences, pauses 0.8-3 s, speeds 150 and 175 (--quick: one)
  traps         60 s each with no words: silence, hold music (chords every 2 s), 425 Hz ring-back, pink line noise
  reversed      45 s of espeak played backwards: speech to VAD, no words (not an issue trap; its own column)
  switch        6 English then 6 German espeak sentences (multilingual models only; "n/a" on *.en)
Columns: sentences heard = sentences of which >= 60% of the words appear in segments overlapping them
(``sentences_missing``); WER = word-level Levenshtein distance / truth words (lowercase, no punctuation, digits
up to 20 and 30/40/50 spelled out), all files of the kind together; words invented on traps = words output on the
four traps; German heard as German = German sentences with >= 50% word overlap (umlauts kept), how many came out in
English instead, and the English sentences heard before the switch; time vs plain = decode seconds / plain's over
the same files; RTF = audio seconds / decode seconds (higher is faster).
Below the table: per configuration the sentences plain heard and it missed (the product defaults must have none).
Writes --out (JSON: machine facts, options, per file per configuration results, totals).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from speech import (  # noqa: E402
    KEYED_SENTENCES,
    SENTENCES,
    Said,
    real_voice_call,
    sentences_missing,
    silence,
    speak,
    tone,
    write_audio,
)

GERMAN = [
    "Guten Tag, ich rufe wegen meiner Rechnung an.",
    "Die Lieferung ist leider noch nicht angekommen.",
    "Können Sie mich bitte morgen früh zurückrufen?",
    "Mein Vertrag läuft am Ende des Monats aus.",
    "Ich möchte einen Termin für nächste Woche vereinbaren.",
    "Vielen Dank für Ihre Hilfe und einen schönen Tag noch.",
]
ENGLISH_MARKERS = {"the", "a", "an", "i", "my", "is", "are", "was", "to", "of", "and", "you", "your", "for", "on", "in", "it", "we", "please", "call", "about"}  # fmt: skip
GERMAN_MARKERS = {"der", "die", "das", "ich", "mein", "meine", "ist", "sind", "und", "sie", "für", "am", "des", "nicht", "noch", "einen", "ihre", "zu", "mich"}  # fmt: skip
OPEN = {
    "beam_size": 5,
    "vad_filter": True,
    "condition_on_previous_text": False,
    "hallucination_silence_threshold": None,
}


@dataclass
class Case:
    name: str
    kind: str  # real | espeak | trap | switch
    samples: Any
    said: list[Said] = field(default_factory=list)  # English truth sentences
    german: list[Said] = field(default_factory=list)


NUMBERS = dict(enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]))  # fmt: skip
SPELLED = {str(n): word for n, word in {**NUMBERS, 30: "thirty", 40: "forty", 50: "fifty"}.items()}


def words(text: str) -> list[str]:
    """Lowercase words without punctuation; small numbers written as digits become words (the scripts spell them)."""
    found = [w.strip("'") for w in re.findall(r"[\w']+", text.lower()) if w.strip("'")]
    return [SPELLED.get(w, w) for w in found]


def edits(truth: list[str], heard: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(heard) + 1))
    for i, t in enumerate(truth, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(heard, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (t != h))
    return row[-1]


def script(texts: list[str], rng: random.Random, voice: str = "en-us", speed: int = 150, at: float = 0.0) -> tuple[list[Any], list[Said]]:  # fmt: skip
    parts: list[Any] = []
    said: list[Said] = []
    for text in texts:
        voiced = speak(text, voice=voice, speed=speed)
        said.append(Said(at, at + len(voiced) / 16000, text))
        pause = rng.uniform(0.8, 3.0)
        parts += [voiced, silence(pause)]
        at += len(voiced) / 16000 + pause
    return parts, said


def traps(seed: int) -> dict[str, Any]:
    noise = np.random.default_rng(seed)
    chords = [(220, 277, 330), (247, 311, 370), (196, 247, 294), (175, 220, 262)]
    music = np.concatenate([sum(tone(2.0, hz, 0.2 / 3) for hz in chords[i % 4]) for i in range(30)])
    spectrum = np.fft.rfft(noise.standard_normal(60 * 16000))
    spectrum[1:] /= np.sqrt(np.fft.rfftfreq(60 * 16000)[1:])
    pink = np.fft.irfft(spectrum, 60 * 16000)
    return {
        "silence": silence(60.0),
        "hold music": music,
        "ring-back 425 Hz": np.concatenate([np.concatenate([tone(1.0, 425, 0.3), silence(4.0)])] * 12),
        "line noise": (0.05 * pink / pink.std()).astype(np.float32),
    }


def build(folder: Path, tmp: Path, quick: bool, seed: int, multilingual: bool, calls: int = 4) -> list[Case]:
    rng = random.Random(seed)
    cases = [Case(f"real voices {k}", "real", *real_voice_call(folder, 120 if quick else 400, seed=k)) for k in range(1, 2 if quick else calls + 1)]  # fmt: skip
    texts = SENTENCES + [text for _, text in KEYED_SENTENCES]
    for speed in [150] if quick else [150, 175]:
        parts, said = script(rng.sample(texts, 12), rng, speed=speed)
        cases.append(Case(f"espeak speed {speed}", "espeak", np.concatenate(parts), said))
    cases += [Case(name, "trap", samples) for name, samples in traps(seed).items()]
    # Speech-like sound without words (espeak played backwards): VAD hears speech throughout, so the repair
    # decodes it again; what comes out is invented. Not one of the traps: reported on its own.
    backwards = np.concatenate([speak(text)[::-1] for text in SENTENCES[:4]] * 2)
    cases.append(Case("reversed speech", "babble", backwards))
    if multilingual:
        english, said = script(SENTENCES, rng)
        german, said_de = script(GERMAN, rng, voice="de", at=sum(len(p) for p in english) / 16000)
        cases.append(Case("English then German", "switch", np.concatenate(english + german), said, said_de))
    from transcriber.audio import decode as read

    for i, case in enumerate(cases):  # through a file, so the encoding is part of the test
        case.samples = read(str(write_audio(tmp / f"{i}{'.m4a' if i % 2 == 0 else '.wav'}", case.samples)))
    return cases


def configurations(multilingual: bool) -> dict[str, tuple[str, dict[str, Any] | None]]:
    from transcriber.runner import decode_options
    from transcriber.settings import Settings

    product = {k: v for k, v in decode_options(Settings(_env_file=None)).items() if k not in ("channels", "speakers")}  # type: ignore[call-arg]
    configs: dict[str, tuple[str, dict[str, Any] | None]] = {
        "plain": ("plain faster-whisper", None),
        "defaults": ("product defaults", product),
        "defaults-no-repair": ("product defaults, no repair", {**product, "repair": False}),
        "defaults-one-language": (
            "product defaults, language of the first 30 s only",
            {**product, "multilingual": False},
        ),
        "open-repair": ("beam5+VAD, no prompt, no silence skip, repair", {**OPEN, "repair": True}),
        "open": ("beam5+VAD, no prompt, no silence skip, no repair", {**OPEN, "repair": False}),
        "open-repair-multilingual": (
            "beam5+VAD, no prompt, no silence skip, repair + multilingual",
            {**OPEN, "repair": True, "multilingual": True},
        ),
        "issue7": (
            "issue-7 defaults",
            {**OPEN, "hallucination_silence_threshold": 2.0, "word_timestamps": True, "repair": False},
        ),
    }
    if not multilingual:
        del configs["open-repair-multilingual"]
    return configs


def run(model: Any, options: dict[str, Any] | None, samples: Any, seed: int) -> tuple[list[Any], float, int]:
    import ctranslate2

    from transcriber.decoding import decode

    ctranslate2.set_random_seed(seed)
    began = time.perf_counter()
    if options is None:
        found: list[Any] = list(model.transcribe(samples, beam_size=5, vad_filter=True)[0])
        repaired = 0
    else:
        found = []
        repaired = decode(model, [samples], options, found.append).repaired
    return found, time.perf_counter() - began, repaired


def near(segments: list[Any], said: Said) -> str:
    return " ".join(s.text for s in segments if s.end > said.start - 0.5 and s.start < said.end + 0.5)


def score(case: Case, segments: list[Any]) -> dict[str, Any]:
    segments = sorted(segments, key=lambda s: s.start)
    text = " ".join(s.text.strip() for s in segments)
    row: dict[str, Any] = {"text": text}
    if case.kind in ("trap", "babble"):
        return {**row, f"{case.kind}_words": len(words(text))}
    missing = sentences_missing(case.said, segments)
    row.update(sentences=len(case.said), heard=len(case.said) - len(missing), missing=[asdict(m) for m in missing])
    if case.kind in ("real", "espeak"):
        truth = words(" ".join(s.text for s in case.said))
        row.update(truth_words=len(truth), edits=edits(truth, words(text)))
        row["wer"] = round(row["edits"] / len(truth), 4)
    else:
        heard = [(set(words(near(segments, s))), words(s.text)) for s in case.german]
        german = [sum(w in got for w in want) >= 0.5 * len(want) for got, want in heard]
        english = [not ok and len(got & ENGLISH_MARKERS) > len(got & GERMAN_MARKERS) for ok, (got, _) in zip(german, heard, strict=True)]  # fmt: skip
        row.update(german=len(german), german_heard=sum(german), german_in_english=sum(english))
    return row


def totals(rows: dict[str, dict[str, Any]], cases: list[Case]) -> dict[str, Any]:
    def add(kind: str, key: str) -> int:
        return sum(rows[c.name].get(key, 0) for c in cases if c.kind == kind)

    seconds = sum(r["seconds"] for r in rows.values())
    audio = sum(r["audio_seconds"] for r in rows.values())
    out: dict[str, Any] = {"seconds": round(seconds, 2), "audio_seconds": round(audio, 1), "rtf": round(audio / seconds, 2)}  # fmt: skip
    for kind in ("real", "espeak"):
        out[kind] = {"sentences": add(kind, "sentences"), "heard": add(kind, "heard")}
        out[kind]["wer"] = round(add(kind, "edits") / max(add(kind, "truth_words"), 1), 4)
    out["trap_words"] = add("trap", "trap_words")
    out["babble_words"] = add("babble", "babble_words")
    out["repaired"] = sum(r["repaired"] for r in rows.values())
    if any(c.kind == "switch" for c in cases):
        out["switch"] = {k: add("switch", k) for k in ("sentences", "heard", "german", "german_heard", "german_in_english")}  # fmt: skip
    return out


def table(configs: dict[str, tuple[str, Any]], total: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| configuration | sentences heard (real voices) | sentences heard (espeak) | WER espeak | WER real | words invented on traps | words on reversed speech | German heard as German | time vs plain | RTF |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    plain = total.get("plain")
    for key, (label, _) in configs.items():
        t = total[key]
        sw = t.get("switch")
        german = (
            f"{sw['german_heard']}/{sw['german']} ({sw['german_in_english']} in English; English {sw['heard']}/{sw['sentences']})"
            if sw
            else "n/a"
        )
        vs = f"{t['seconds'] / plain['seconds']:.2f}x" if plain else "n/a"
        real, spoken = t["real"], t["espeak"]
        lines.append(
            f"| {label} (`{key}`) | {real['heard']}/{real['sentences']} | {spoken['heard']}/{spoken['sentences']} "
            f"| {spoken['wer']:.1%} | {real['wer']:.1%} | {t['trap_words']} | {t['babble_words']} | {german} | {vs} "
            f"| {t['rtf']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base")
    parser.add_argument("--quick", action="store_true", help="one call of each kind, 120-s real-voice call")
    parser.add_argument("--calls", type=int, default=4, help="real-voice calls of 400 s (default 4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default="", help="comma-separated keys (see the table); default: all")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "completeness.json")
    args = parser.parse_args()
    import ctranslate2
    import faster_whisper

    from transcriber.model_store import resolve_model

    model = faster_whisper.WhisperModel(resolve_model(args.model, None), device="cpu", compute_type="int8", cpu_threads=args.threads)  # fmt: skip
    multilingual = bool(model.model.is_multilingual)
    configs = configurations(multilingual)
    if args.configs:
        unknown = set(args.configs.split(",")) - set(configs)
        if unknown:
            parser.error(f"unknown --configs {sorted(unknown)}; choose from {', '.join(configs)}")
        configs = {k: v for k, v in configs.items() if k in args.configs.split(",")}
    folder = Path(os.environ.get("TRANSCRIBER_SHARED_AUDIO") or ROOT.parent / "shared" / "audio")
    with tempfile.TemporaryDirectory() as tmp:
        cases = build(folder, Path(tmp), args.quick, args.seed, multilingual, args.calls)
    list(model.transcribe(cases[0].samples[: 10 * 16000], beam_size=5)[0])  # untimed warm-up: row 1 pays no start-up
    results: dict[str, dict[str, dict[str, Any]]] = {key: {} for key in configs}
    for case in cases:
        for key, (_, options) in configs.items():
            segments, seconds, repaired = run(model, options, case.samples, args.seed)
            audio = len(case.samples) / 16000
            row = {"seconds": round(seconds, 3), "audio_seconds": round(audio, 2), "repaired": repaired}
            results[key][case.name] = {**row, **score(case, segments)}
            print(f"{case.name:22} {key:26} {seconds:7.1f} s  RTF {audio / seconds:6.1f}", file=sys.stderr)
    total = {key: totals(rows, cases) for key, rows in results.items()}
    lost: dict[str, list[dict[str, Any]]] = {}
    if "plain" in results:
        for key, rows in results.items():
            lost[key] = [
                {"file": c.name, **m}
                for c in cases
                for m in rows[c.name].get("missing", [])
                if m not in results["plain"][c.name]["missing"]
            ]
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    facts = {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None),
        "cpu_count": os.cpu_count(),
        "model": args.model,
        "compute_type": "int8",
        "threads": args.threads,
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "calls": args.calls,
        "seed": args.seed,
    }
    options = {key: {"label": label, "options": opts} for key, (label, opts) in configs.items()}
    report = {"machine": facts, "configurations": options, "totals": total, "lost_vs_plain": lost, "files": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(table(configs, total))
    for key, missed in lost.items():
        if key != "plain":
            flag = " (the defaults must have none!)" if missed and key == "defaults" else ""
            print(f"\n{configs[key][0]} (`{key}`): {len(missed)} sentences plain heard and it missed{flag}")
            for m in missed:
                print(f"  {m['file']} {m['start']:.1f}-{m['end']:.1f} s: {m['text']}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
