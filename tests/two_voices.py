"""Two-voice mono calls with known truth: who said what, and when (issue 13, speaker turns).

Used by the tests and by ``bench/diarization.py``, never shipped. Two espeak-ng voices take turns:
``VOICE_A`` (speaks first, speaker 0) and ``VOICE_B`` (speaker 1). The speaker-embedding model (CAM++)
tells these two apart well (mean cosine similarity across the voices 0.43, within one voice 0.74-0.82),
while ``en-us`` against ``en-gb+f3`` or ``en-us+m3`` measured 0.70-0.78: too close to be a fair test.

Also here: the truth of the shared recording ``stereo_diarization.wav`` mixed down to mono
(``mixdown_truth``), and the metrics, which are pure: ``der`` (frame-based diarization error rate) and
``words_right`` (the share of transcribed words given to the right speaker).
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from speech import speak

RATE = 16000
VOICE_A: dict[str, Any] = {"voice": "en-us", "pitch": 40}
VOICE_B: dict[str, Any] = {"voice": "en+f4", "pitch": 60}
VOICES = (VOICE_A, VOICE_B)
SPEEDS = (145, 160, 175)  # words per minute, chosen per sentence
BACKCHANNELS = ("yes", "okay", "right", "mm-hmm", "I see")
OVERLAP_SECONDS = 0.8  # the one overlap: the next speaker starts this long before the current sentence ends

# What agent and caller say: distinct sentences, so a long call does not repeat a few (each one once per round).
CALL_SENTENCES = [
    "Good morning, thank you for calling customer support, how can I help you today?",
    "Hi, I am calling about an order that still has not arrived.",
    "Could you give me the order number, please?",
    "Yes, it is four seven two nine one eight.",
    "Thank you, let me pull that up for you.",
    "I can see the parcel left our warehouse on the third of March.",
    "It was supposed to be delivered last Friday, but nobody came.",
    "I am sorry to hear that, I will check with the courier.",
    "Can you confirm the delivery address for me?",
    "It is twenty two Station Road, Cambridge, C B one two J D.",
    "And is that a house or a flat?",
    "It is a flat on the second floor, number five.",
    "The courier notes say they could not get into the building.",
    "That is strange, there is a buzzer by the front door.",
    "I will add a note about the buzzer for the next attempt.",
    "When will they try again?",
    "The next delivery slot is Wednesday between nine and one.",
    "Wednesday morning does not work for me, I am at work.",
    "Would Saturday afternoon be better?",
    "Saturday is fine, any time after two o'clock.",
    "I have booked Saturday from two until six.",
    "Will I get a text message before they arrive?",
    "Yes, you will get a message with a one hour window that morning.",
    "Can I also ask about the invoice I received?",
    "Of course, what seems to be the problem with it?",
    "I was charged twice for the same printer cartridges.",
    "Let me look at your billing history.",
    "I can see two payments of thirty nine pounds ninety nine on the same day.",
    "That second payment should never have gone through.",
    "You are right, I will refund the duplicate charge now.",
    "How long does a refund usually take?",
    "It normally takes three to five working days to reach your account.",
    "Will the refund go back to the same card?",
    "Yes, it goes back to the card ending in six one four zero.",
    "I also want to change the phone number on my account.",
    "What is the new number you would like to use?",
    "It is oh seven seven zero zero, nine hundred, one two three.",
    "I have updated that, and the old number has been removed.",
    "My last complaint about the broken kettle was never answered.",
    "I apologise, I can see that ticket was closed by mistake.",
    "I will reopen it and ask a supervisor to call you back.",
    "When can I expect that call?",
    "Someone from the team will call you by Thursday at the latest.",
    "The kettle stopped working after only two weeks.",
    "Do you still have the receipt or the box it came in?",
    "I kept the receipt, but the box went out with the recycling.",
    "The receipt is enough, we can send a replacement kettle.",
    "Could you spell your surname for me, please?",
    "It is Harrington, H A double R I N G T O N.",
    "And your date of birth, for security?",
    "The fourteenth of July, nineteen eighty six.",
    "Thank you, you have passed the security check.",
    "Is there a reference number for today's call?",
    "Your reference number is C S eight eight four one.",
    "I would like to cancel my monthly subscription as well.",
    "I can do that, but you would lose the free delivery.",
    "That is fine, I hardly order anything any more.",
    "The subscription will end on the thirtieth of April.",
    "Will I be charged again before then?",
    "No, the payment in April has already been cancelled.",
    "Sorry, the line is very bad, could you repeat that?",
    "I said there will be no further payments.",
    "Is there anything else I can help you with today?",
    "No, that is everything, thank you for your help.",
    "You are welcome, have a lovely rest of your day.",
]


@dataclass(frozen=True)
class Line:
    """One thing said in a built call: a sentence or a backchannel, its exact time and its speaker."""

    start: float
    end: float
    speaker: int  # 0: the voice that speaks first (VOICE_A), 1: VOICE_B
    text: str


@lru_cache(maxsize=1024)
def _voiced(text: str, speaker: int, speed: int) -> np.ndarray:
    """espeak's speech for ``text`` in the speaker's voice, its leading and trailing silence cut off."""
    samples = speak(text, speed=speed, **VOICES[speaker])
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    samples = samples[loud[0] : loud[-1] + 1] if loud.size else samples
    samples.setflags(write=False)  # shared by the cache
    return samples


def two_voice_call(seconds: float, *, seed: int = 0) -> tuple[np.ndarray, list[Line]]:
    """A mono call of at least ``seconds`` (the last turn is finished) where two voices take turns.

    Each turn is one to three sentences of ``CALL_SENTENCES`` (0.2-0.5 s apart; a shuffled deck, so no sentence
    comes back before all have been said); 0.3-1.5 s of pause between turns. Every third to sixth turn (the
    first among turns 2-5) has two or three sentences and the listener puts a backchannel ("mm-hmm") into a pause
    inside it (0.3-0.8 s of silence before it, 0.3-0.6 s after).
    Exactly one overlap, at the first change of speaker after 40 % of the call: the next speaker starts
    ``OVERLAP_SECONDS`` before the current sentence ends (the two are added). Same seed, same call.
    Returns 16 kHz float32 samples and the truth: every line in time order.
    """
    rng = random.Random(seed)
    deck: list[str] = []

    def sentence() -> str:
        if not deck:
            deck.extend(rng.sample(CALL_SENTENCES, len(CALL_SENTENCES)))
        return deck.pop()

    placed: list[tuple[int, np.ndarray]] = []  # (first sample, speech)
    lines: list[Line] = []

    def say(at: float, text: str, speaker: int) -> float:
        audio = _voiced(text, speaker, rng.choice(SPEEDS))
        first = round(at * RATE)
        placed.append((first, audio))
        lines.append(Line(first / RATE, (first + len(audio)) / RATE, speaker, text))
        return (first + len(audio)) / RATE

    at, speaker, overlapped = 0.3, 0, False
    until_backchannel = rng.randint(2, 5)  # turns until the next backchannel: every 3rd to 6th, ~ every fourth
    while at < seconds or not overlapped:
        until_backchannel -= 1
        backchannel = until_backchannel <= 0
        count = rng.choice((2, 2, 3) if backchannel else (1, 2, 2, 3))
        if backchannel:
            until_backchannel = rng.randint(3, 6)
        where = rng.randrange(1, count) if backchannel else -1
        for k in range(count):
            if k:
                at += rng.uniform(0.2, 0.5)
            if k == where:
                at = say(at + rng.uniform(0.1, 0.3), rng.choice(BACKCHANNELS), 1 - speaker) + rng.uniform(0.3, 0.6)
            at = say(at, sentence(), speaker)
        if not overlapped and at >= 0.4 * seconds:
            at -= OVERLAP_SECONDS
            overlapped = True
        else:
            at += rng.uniform(0.3, 1.5)
        speaker = 1 - speaker
    total = max(first + len(audio) for first, audio in placed) + RATE // 2
    mix = np.zeros(total, dtype=np.float32)
    for first, audio in placed:
        mix[first : first + len(audio)] += audio
    np.clip(mix, -1.0, 1.0, out=mix)
    return mix, sorted(lines, key=lambda line: (line.start, line.speaker))


def truth_spans(lines: Iterable[Line]) -> list[tuple[float, float, int]]:
    """The lines as ``(start, end, speaker)``: the reference that ``der`` and ``words_right`` take."""
    return [(line.start, line.end, line.speaker) for line in lines]


def shared_audio() -> Path:
    """Recorded speech: ``TRANSCRIBER_SHARED_AUDIO``, else ``shared/audio`` beside the checkout (as the tests)."""
    configured = os.environ.get("TRANSCRIBER_SHARED_AUDIO", "")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "audio"


def mixdown_truth(path: str | os.PathLike[str]) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """A two-channel call as one mono channel (mean of the sides, 16 kHz), and who spoke when by its channels.

    The truth is Silero VAD's speech on each channel alone (``coverage.speech_spans``): speaker 0 = left.
    In ``stereo_diarization.wav`` both talk at once (left 0-5.0 s, right 0-3.0 s): a test of overlap.
    """
    from transcriber.audio import decode_sides
    from transcriber.coverage import speech_spans

    sides = decode_sides(str(path), "split")
    if len(sides) != 2:
        raise ValueError(f"{path}: not a two-channel recording")
    mono = ((sides[0] + sides[1]) / 2).astype(np.float32)
    truth = [(a, b, k) for k, side in enumerate(sides) for a, b in speech_spans(side, sample_rate=RATE)]
    return mono, sorted(truth)


# --- metrics (pure) ---------------------------------------------------------------------------------------------


def _spans(items: Iterable[Any]) -> list[tuple[float, float, Any]]:
    """``(start, end, speaker)`` from tuples or from anything with those attributes (``Line``, ``Turn``)."""
    out = []
    for item in items:
        if hasattr(item, "speaker") and hasattr(item, "start"):
            out.append((float(item.start), float(item.end), item.speaker))
        else:
            out.append((float(item[0]), float(item[1]), item[2]))
    return out


def _best_mapping(score: np.ndarray) -> dict[int, int]:
    """Row -> column, one to one, with the highest total ``score`` (brute force: fine for up to 8 x 8)."""
    rows, cols = score.shape
    if rows == 0 or cols == 0:
        return {}
    best, best_total = {}, -1.0
    if rows <= cols:
        for chosen in itertools.permutations(range(cols), rows):
            total = float(sum(score[r, c] for r, c in enumerate(chosen)))
            if total > best_total:
                best, best_total = dict(enumerate(chosen)), total
    else:
        for chosen in itertools.permutations(range(rows), cols):
            total = float(sum(score[r, c] for c, r in enumerate(chosen)))
            if total > best_total:
                best, best_total = {r: c for c, r in enumerate(chosen)}, total
    return best


def der(
    reference: Sequence[Any],
    hypothesis: Sequence[Any],
    *,
    step: float = 0.01,
) -> dict[str, Any]:
    """Frame-based diarization error rate, no collar, overlapped speech counted.

    ``reference`` and ``hypothesis`` are ``(start, end, speaker)`` (or ``Line``/``Turn``). In each frame of
    ``step`` seconds, N_ref and N_hyp speakers talk (a frame where two reference speakers overlap has N_ref 2, so
    a one-speaker hypothesis misses one): missed = max(0, N_ref - N_hyp), false alarm = max(0, N_hyp - N_ref),
    confusion = min(N_ref, N_hyp) - correct, where correct counts reference speakers whose mapped hypothesis
    speaker also talks. Hypothesis speakers map one to one onto reference speakers, the mapping that maximises
    the matched time. Returns shares of the reference speech time: missed, false_alarm, confusion, der; and
    reference_seconds and the mapping found (hypothesis label -> reference label).
    """
    ref, hyp = _spans(reference), _spans(hypothesis)
    ref_labels = sorted({s for _, _, s in ref}, key=repr)
    hyp_labels = sorted({s for _, _, s in hyp}, key=repr)
    end = max((e for _, e, _ in [*ref, *hyp]), default=0.0)
    frames = int(np.ceil(end / step)) + 1
    centres = (np.arange(frames) + 0.5) * step

    def activity(spans: list[tuple[float, float, Any]], labels: list[Any]) -> np.ndarray:
        active = np.zeros((len(labels), frames), dtype=bool)
        index = {label: k for k, label in enumerate(labels)}
        for a, b, s in spans:
            active[index[s]] |= (centres >= a) & (centres < b)
        return active

    r, h = activity(ref, ref_labels), activity(hyp, hyp_labels)
    matched = (h[:, None, :] & r[None, :, :]).sum(axis=2) if len(hyp_labels) and len(ref_labels) else np.zeros((0, 0))
    mapping = _best_mapping(np.asarray(matched, dtype=float))
    n_ref, n_hyp = r.sum(axis=0), h.sum(axis=0)
    correct = np.zeros(frames, dtype=int)
    for hk, rk in mapping.items():
        correct += h[hk] & r[rk]
    total = float(n_ref.sum())
    missed = float(np.maximum(n_ref - n_hyp, 0).sum())
    false_alarm = float(np.maximum(n_hyp - n_ref, 0).sum())
    confusion = float((np.minimum(n_ref, n_hyp) - correct).sum())
    share = (lambda x: x / total) if total else (lambda x: 0.0 if x == 0 else float("inf"))
    return {
        "missed": share(missed),
        "false_alarm": share(false_alarm),
        "confusion": share(confusion),
        "der": share(missed + false_alarm + confusion),
        "reference_seconds": total * step,
        "mapping": {hyp_labels[hk]: ref_labels[rk] for hk, rk in mapping.items()},
    }


def words_right(words: Sequence[tuple[float, float, str, Any]], reference: Sequence[Any]) -> dict[str, Any]:
    """The share of words given to the right speaker.

    ``words`` are ``(start, end, text, speaker name)``; ``reference`` is ``(start, end, speaker)`` (or ``Line``).
    A word counts where its midpoint lies inside exactly one reference line; a word in an overlap or outside
    every line is ``uncounted``. Names map one to one onto reference speakers, the mapping that maximises the
    right words; a word of a name left unmapped (or of no name, ``None``) is wrong. Returns share (right /
    counted; None when nothing counted), counted, right, uncounted, and the mapping (name -> speaker).
    """
    ref = _spans(reference)
    counted: list[tuple[Any, Any]] = []  # (name, reference speaker)
    uncounted = 0
    for start, end, _, name in words:
        middle = (start + end) / 2
        inside = [s for a, b, s in ref if a <= middle < b]
        if len(inside) == 1:
            counted.append((name, inside[0]))
        else:
            uncounted += 1
    names = sorted({n for n, _ in counted if n is not None}, key=repr)
    speakers = sorted({s for _, s in counted}, key=repr)
    score = np.zeros((len(names), len(speakers)))
    for name, speaker in counted:
        if name is not None:
            score[names.index(name), speakers.index(speaker)] += 1
    mapping = _best_mapping(score)
    right = int(sum(score[n, s] for n, s in mapping.items()))
    return {
        "share": right / len(counted) if counted else None,
        "counted": len(counted),
        "right": right,
        "uncounted": uncounted,
        "mapping": {names[n]: speakers[s] for n, s in mapping.items()},
    }
