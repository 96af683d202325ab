"""Redaction measured on what Whisper writes when the numbers are *spoken*, not on text the detector's author wrote.

A stratified sample of ``tests/pii_cases.cases`` (``--per-kind`` each of card, phone, ssn, account, email, code;
twice as many negatives; half as many Luhn-failing card digits) is spoken by espeak-ng (segments 0.4 s apart; the
voice ``en-us`` or ``en`` and 140-175 words a minute, from a seeded rng; the digits of a written item are read one
by one, as a caller says them, not as espeak reads ``4111``), and transcribed by ``oneshot.transcribe_file``, the
code of ``transcriber transcribe FILE``, with the shipped defaults but the model (``--model``). One model process
serves every case: ``oneshot`` closes its runner after each file, so the bench hands it one that stays open.

Per item, on the ASR text (digits and number words read by this file's own converter, not by ``pii``):
  heard           the item's digits appear in the transcript (e-mails: the local part, joins like ``dot`` dropped)
  masked          after ``pii.redact_segments`` at the item's level (``numbers``; ``all`` for e-mails and codes) no
                  run of digits in the redacted text shares 4 digits in a row with the item (all of them when it is
                  shorter); e-mails: the local part is gone
Negatives (cases with nothing but an ordinary number): wrongly masked = the redacted text differs from the ASR text.
Luhn-failing card digits: called ``[card]``. Writes --out (JSON: machine facts, options, figures, the first misses
with the ASR and redacted text, and every case's speech settings and ASR segments) and prints a markdown table.
``--rescore JSON`` judges those kept segments again with the ``pii`` on the path, in a second: a change to ``pii``
is measured on the same transcripts (an older ``pii``: ``PYTHONPATH=<its src>``).

    python bench/redaction_heard.py                       # tiny.en, 40 per kind: ~6 min on 2 cores
    python bench/redaction_heard.py --model base --out bench/results/redaction_heard.base.json
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from redaction import machine  # noqa: E402

from pii_cases import LEVEL_OF, POSITIVE, Case, Truth, cases  # noqa: E402
from speech import silence, speak, write_audio  # noqa: E402
from transcriber import oneshot, pii  # noqa: E402
from transcriber.runner import Deadline, Events, ModelConfig, Request, SupervisedModel  # noqa: E402
from transcriber.segments import Segment  # noqa: E402
from transcriber.settings import Settings  # noqa: E402

KINDS = (*POSITIVE, "negative", "luhn_fail")
MISSES_KEPT = 10


# ---------------------------------------------------------------- the sample and its speech


def sample(per_kind: int, seed: int) -> list[Case]:
    """The first ``per_kind`` cases of each positive kind, ``2 * per_kind`` negatives, ``per_kind // 2`` Luhn fails."""
    wanted = {kind: per_kind for kind in POSITIVE} | {"negative": 2 * per_kind, "luhn_fail": max(per_kind // 2, 1)}
    chosen: list[Case] = []
    for case in cases(60 * per_kind + 200, seed):
        kind = main_truth(case).kind
        if wanted.get(kind, 0) > 0:
            wanted[kind] -= 1
            chosen.append(case)
    return chosen


def main_truth(case: Case) -> Truth:
    """The item the case is about: its positive or Luhn fail, else its one negative."""
    return next((t for t in case.truths if t.kind != "negative"), case.truths[0])


def spoken_texts(case: Case) -> list[str]:
    """The segments as a caller says them: in an item's words, digits one by one and ``-``/``.`` as a pause."""
    texts = list(case.texts)
    for truth in case.truths:
        if truth.kind == "negative" or truth.kind == "email":
            continue
        for segment, start, end in sorted(truth.pieces, key=lambda p: -p[1]):
            said = texts[segment][start:end].replace("+", "plus ")
            said = re.sub(r"(?<=\d)[-.](?=\d)", ", ", said)
            said = re.sub(r"\d+", lambda m: " ".join(m[0]), said)
            texts[segment] = texts[segment][:start] + said + texts[segment][end:]
    return texts


def case_audio(texts: Sequence[str], rng: random.Random) -> tuple[np.ndarray, str, int]:
    voice, speed = rng.choice(["en-us", "en"]), rng.randint(140, 175)
    parts = [silence(0.3)]
    for text in texts:
        parts += [speak(text, voice=voice, speed=speed), silence(0.4)]
    return np.concatenate(parts), voice, speed


# ---------------------------------------------------------------- the product's decoding, one model for all cases


class _KeptModel:
    """The runner ``oneshot`` gets: the same model process for every file (``close`` leaves it running)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.runner = SupervisedModel(config)

    def made_for(self, config: ModelConfig) -> _KeptModel:
        assert config == self.config, f"oneshot asked for {config}, the bench loaded {self.config}"
        return self

    def transcribe(self, request: Request, *, deadline: Deadline | None, tick: float = 5.0) -> Events:
        return self.runner.transcribe(request, deadline=deadline, tick=tick)

    def close(self) -> None:
        pass


@contextmanager
def kept_model(settings: Settings) -> Iterator[float]:
    """``oneshot.transcribe_file`` with one loaded model for all calls; yields the load seconds."""
    kept = _KeptModel(oneshot.model_config_for(settings))
    kept.runner.start()
    try:
        with mock.patch.object(oneshot, "SupervisedModel", kept.made_for):
            yield kept.runner.load_seconds or 0.0
    finally:
        kept.runner.close()


def transcribe(settings: Settings, audio: Path) -> list[Segment]:
    """The segments ``transcriber transcribe FILE`` writes to its json (speakers included), in order."""
    result = oneshot.transcribe_file(settings, audio, formats=("json",), output_dir=audio.parent,
                                     progress=io.StringIO())  # fmt: skip
    body = json.loads(result.files[0].read_text(encoding="utf-8"))
    return [Segment(s["start"], s["end"], s["text"], s.get("speaker")) for s in body["segments"]]


# ---------------------------------------------------------------- reading digits back (independent of pii)

_UNITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
          "six": "6", "seven": "7", "eight": "8", "nine": "9"}  # fmt: skip
_TEENS = {"ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15",
          "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19"}  # fmt: skip
_TENS = {"twenty": "2", "thirty": "3", "forty": "4", "fifty": "5", "sixty": "6", "seventy": "7", "eighty": "8",
         "ninety": "9"}  # fmt: skip
_REPEATS = {"double": 2, "triple": 3}
_SOFT = frozenset({"uh", "um", "umm", "er", "ah", "hmm", "dash", "hyphen"})  # words that do not end a run
_WORD = re.compile(r"\[[a-z]+\]|\d+|[a-z]+(?:'[a-z]+)?|\S")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _is_numeric(word: str) -> bool:
    return word.isdigit() or word in _UNITS or word in _TEENS or word in _TENS or word in _REPEATS


class _Runs:
    """Reads words one by one into runs of digits; a word that is no number and no pause ends a run."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.run = ""
        self.tens = ""  # "forty" waiting for its unit
        self.hundred = False  # "X hundred" waiting for "twenty", "and five"

    def read(self, word: str, before: str, after: str) -> None:
        if word.isdigit() or word in _UNITS:
            self._digits(word, before)
        elif word in _TEENS or word in _TENS:
            self._flush_tens()
            self.run = self.run[:-2] if self.hundred else self.run
            if word in _TEENS:
                self.run += _TEENS[word]
            else:
                self.tens = _TENS[word]
            self.hundred = False
        elif word in _REPEATS and (after in _UNITS or after.isdigit()):
            self._flush_tens()
            self.run += (_UNITS.get(after) or after[0]) * (_REPEATS[word] - 1)  # the digit itself comes next
        elif word == "hundred" and self.run:
            self._flush_tens()
            self.run, self.hundred = self.run + "00", True
        elif word == "and" and self.hundred:
            pass
        elif word in _SOFT or (len(word) == 1 and not word.isalnum() and word not in "[]"):
            self._flush_tens()
            self.hundred = False
        else:
            self.end()

    def _digits(self, word: str, before: str) -> None:
        digit = _UNITS.get(word, word)
        if self.tens and len(digit) == 1 and digit != "0":
            self.run, self.tens = self.run + self.tens + digit, ""
        elif self.hundred and before == "and" and len(digit) == 1:
            self.run = self.run[:-1] + digit
        else:
            self._flush_tens()
            self.run += digit
        self.hundred = False

    def _flush_tens(self) -> None:
        if self.tens:
            self.run, self.tens = self.run + self.tens + "0", ""

    def end(self) -> None:
        self._flush_tens()
        if self.run:
            self.runs.append(self.run)
        self.run, self.hundred = "", False


def digit_runs(text: str) -> list[str]:
    """The numbers said in ``text`` as runs of digits: ``4532, 0151`` and ``forty five double oh`` read on."""
    words = _words(text)
    reader = _Runs()
    for k, word in enumerate(words):
        before = words[k - 1] if k else ""
        after = next((w for w in words[k + 1 :] if w.isalnum()), "")  # "double, 0": Whisper's comma skipped
        if word in ("o", "oh") and not (_is_numeric(before) or _is_numeric(after) or reader.run):
            word = "_"  # the letter, or "oh" the interjection
        reader.read(word, before, after)
    reader.end()
    return reader.runs


def leaks(value: str, text: str) -> bool:
    """Whether a run of digits in ``text`` holds 4 digits of ``value`` in a row (all of it when shorter)."""
    size = min(4, len(value))
    pieces = {value[k : k + size] for k in range(len(value) - size + 1)}
    return any(piece in run for run in digit_runs(text) for piece in pieces)


_JOINS = frozenset({"dot", "period", "underscore", "dash", "hyphen", "at"})


def _digits_in_place(text: str) -> str:
    """``text`` with each run of number words written as its digits, joins dropped."""
    words = [w for w in _words(text) if w not in _JOINS and w.isalnum() or w.startswith("[")]
    out, numbers = [], []
    for word in [*words, "|"]:
        if _is_numeric(word) or word == "hundred":
            numbers.append(word)
            continue
        if numbers:
            out.append("".join(digit_runs(" ".join(numbers))))
            numbers = []
        out.append("|" if word.startswith("[") else word)
    return "".join(out)


# ---------------------------------------------------------------- judging one case


@dataclass(frozen=True)
class Judged:
    kind: str
    style: str
    value: str
    said: list[str]
    asr: list[str]
    redacted: list[str]
    heard: bool
    masked: bool  # positives and Luhn fails: nothing of it left; negatives: the text unchanged at every level
    called_card: bool = False
    wrongly_masked_at: tuple[str, ...] = ()

    def example(self) -> dict[str, Any]:
        return {"style": self.style, "value": self.value, "said": " / ".join(self.said),
                "asr": " / ".join(self.asr), "redacted": " / ".join(self.redacted)}  # fmt: skip


def judge(case: Case, said: list[str], segments: list[Segment], region: str) -> Judged:
    truth = main_truth(case)
    asr = [s.text.strip() for s in segments]
    if truth.kind == "negative":
        wrong = tuple(level for level in ("numbers", "all")
                      if [s.text for s in pii.redact_segments(segments, level, region)] != [s.text for s in segments])  # fmt: skip
        shown = [s.text.strip() for s in pii.redact_segments(segments, "all", region)]
        return Judged(truth.kind, truth.style, truth.value, said, asr, shown, True, not wrong, wrongly_masked_at=wrong)
    level = LEVEL_OF.get(truth.kind, "numbers")
    redacted = [s.text.strip() for s in pii.redact_segments(segments, level, region)]
    heard_text, masked_text = " ".join(asr), " ".join(redacted)
    if truth.kind == "email":
        local = re.sub(r"[^a-z0-9]", "", truth.value.split("@")[0].lower())
        heard, masked = local in _digits_in_place(heard_text), local not in _digits_in_place(masked_text)
    else:
        heard = truth.value in "".join(digit_runs(heard_text))
        masked = not leaks(truth.value, masked_text)
    return Judged(truth.kind, truth.style, truth.value, said, asr, redacted, heard, masked,
                  called_card=pii.TOKENS[pii.CARD] in masked_text)  # fmt: skip


def figures(judged: list[Judged]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        rows = [j for j in judged if j.kind == kind]
        if not rows:
            continue
        if kind == "negative":
            out[kind] = {"items": len(rows),
                         "wrongly_masked": {lvl: sum(lvl in j.wrongly_masked_at for j in rows) for lvl in ("numbers", "all")},
                         "misses": [j.example() for j in rows if j.wrongly_masked_at][:MISSES_KEPT]}  # fmt: skip
            continue
        heard = [j for j in rows if j.heard]
        row: dict[str, Any] = {
            "items": len(rows),
            "heard": len(heard),
            "masked_of_heard": sum(j.masked for j in heard),
            "masked_of_all": sum(j.masked for j in rows),
            "misses": [j.example() for j in heard if not j.masked][:MISSES_KEPT],
            "not_heard": [j.example() for j in rows if not j.heard][:5],
        }
        if kind == "luhn_fail":
            row["called_card"] = sum(j.called_card for j in rows)
        out[kind] = row
    return out


def table(model: str, result: dict[str, Any]) -> str:
    def share(part: int, whole: int) -> str:
        return f"{part}/{whole} ({part / whole:.0%})" if whole else "-"

    lines = [f"| {model} | items | heard | masked of heard | masked of all |", "|---|---:|---:|---:|---:|"]
    for kind, row in result.items():
        if kind == "negative":
            wrong = row["wrongly_masked"]
            lines.append(f"| negatives wrongly masked (numbers / all) | {row['items']} | | "
                         f"{share(wrong['numbers'], row['items'])} | {share(wrong['all'], row['items'])} |")  # fmt: skip
            continue
        name = "luhn_fail (masked; called [card])" if kind == "luhn_fail" else kind
        extra = f"; [card] {row['called_card']}" if kind == "luhn_fail" else ""
        lines.append(f"| {name} | {row['items']} | {share(row['heard'], row['items'])} | "
                     f"{share(row['masked_of_heard'], row['heard'])} | {share(row['masked_of_all'], row['items'])}{extra} |")  # fmt: skip
    return "\n".join(lines)


def transcribe_all(settings: Settings, chosen: list[Case], seed: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Each case spoken and transcribed: what was said (voice, speed, text) and the segments Whisper wrote."""
    rng = random.Random(seed)
    heard: list[dict[str, Any]] = []
    audio_seconds, began = 0.0, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, kept_model(settings) as load_seconds:
        for n, case in enumerate(chosen):
            said = spoken_texts(case)
            samples, voice, speed = case_audio(said, rng)
            audio_seconds += len(samples) / 16000
            path = write_audio(Path(tmp) / f"case{n:04d}.wav", samples)
            segments = [[s.start, s.end, s.text, s.speaker] for s in transcribe(settings, path)]
            heard.append({"kind": main_truth(case).kind, "voice": voice, "speed": speed, "said": said,
                          "segments": segments})  # fmt: skip
            print(f"\r{n + 1}/{len(chosen)} cases", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    seconds = {"model_load": round(load_seconds, 1), "total": round(time.perf_counter() - began, 1),
               "audio": round(audio_seconds, 1)}  # fmt: skip
    return heard, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-kind", type=int, default=40)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--model", default="tiny.en", help="WHISPER_MODEL (the shipped default is base)")
    parser.add_argument("--region", default="", help="PHONE_REGION (empty: US)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "redaction_heard.json")
    parser.add_argument("--rescore", type=Path, metavar="JSON",
                        help="judge the transcripts kept in an earlier --out again with today's pii (no speech, no "
                             "model); --per-kind, --seed and --model come from it")  # fmt: skip
    args = parser.parse_args()
    started = machine()
    if args.rescore:
        earlier = json.loads(args.rescore.read_text(encoding="utf-8"))
        options, heard, seconds = earlier["options"], earlier["heard"], earlier["seconds"]
        chosen = sample(options["per_kind"], options["seed"])
        assert [main_truth(c).kind for c in chosen] == [h["kind"] for h in heard], "the sample changed"
        options["rescored_from"] = {"file": args.rescore.name, "commit": earlier["machine"]["commit"],
                                    "date": earlier["machine"]["date"]}  # fmt: skip
    else:
        settings = Settings(_env_file=None, whisper_model=args.model)  # type: ignore[call-arg]
        chosen = sample(args.per_kind, args.seed)
        heard, seconds = transcribe_all(settings, chosen, args.seed)
        decoding = ("whisper_beam_size", "whisper_vad_filter", "whisper_condition_on_previous_text",
                    "whisper_hallucination_silence_threshold", "whisper_repair", "diarize")  # fmt: skip
        options = {"per_kind": args.per_kind, "seed": args.seed, "model": args.model, "region": args.region or "US",
                   "cases": len(chosen), "decoding": {k: getattr(settings, k) for k in decoding}}  # fmt: skip
    region = "" if options["region"] == "US" else options["region"]
    judged = [
        judge(case, h["said"], [Segment(a, b, text, who) for a, b, text, who in h["segments"]], region)
        for case, h in zip(chosen, heard, strict=True)
    ]
    result = figures(judged)
    report = {"machine": started, "options": options, "seconds": seconds, "results": result, "heard": heard}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(table(options["model"], result))
    print(f"\n{len(chosen)} cases, seed {options['seed']}, {seconds['audio']:.0f} s of speech in "
          f"{seconds['total']:.0f} s (model loaded in {seconds['model_load']} s)")  # fmt: skip


if __name__ == "__main__":
    main()
