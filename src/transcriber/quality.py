"""Quality figures of a transcript, and when to flag it for review. Pure functions.

Bounds (documented in the README): a transcript ``needs_review`` when
- the detected language's probability is below 0.5;
- the mean log-probability of its segments (weighted by duration) is below -1.0;
- the mean no-speech probability of its segments is above 0.6 (text where Whisper heard none);
- there are more than 260 words per minute of speech (repetition loops);
- there are fewer than 40 words per minute over at least 30 s of speech (speech missed);
- a stretch of speech of at least 3 s (``coverage.REVIEW_SECONDS``) still has no text after the
  repair: ``22.6 s of speech without text at 04:24-04:46``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from transcriber.coverage import Gap, describe

MIN_LANGUAGE_PROBABILITY = 0.5
MIN_AVG_LOGPROB = -1.0
MAX_NO_SPEECH_PROB = 0.6
MAX_WORDS_PER_MINUTE = 260.0
MIN_WORDS_PER_MINUTE = 40.0
MIN_SPEECH_FOR_RATE = 30.0


@dataclass(frozen=True)
class ScoredSegment:
    start: float
    end: float
    text: str
    avg_logprob: float | None
    no_speech_prob: float | None


@dataclass(frozen=True)
class Quality:
    language_probability: float | None
    speech_seconds: float | None
    avg_logprob: float | None
    no_speech_prob: float | None
    words_per_minute: float | None
    reasons: list[str] = field(default_factory=list)

    @property
    def needs_review(self) -> bool:
        return bool(self.reasons)


def _weighted(values: Sequence[tuple[float | None, float]]) -> float | None:
    known = [(v, max(w, 0.01)) for v, w in values if v is not None]
    if not known:
        return None
    return round(sum(v * w for v, w in known) / sum(w for _, w in known), 3)


def assess(
    segments: Sequence[ScoredSegment],
    *,
    speech_seconds: float | None,
    language_probability: float | None,
    gaps: Sequence[Gap] = (),
) -> Quality:
    """The figures of one transcript and the reasons, if any, to distrust it."""
    spoken = [s for s in segments if s.text.strip()]
    avg_logprob = _weighted([(s.avg_logprob, s.end - s.start) for s in spoken])
    no_speech = _weighted([(s.no_speech_prob, s.end - s.start) for s in spoken])
    words = sum(len(s.text.split()) for s in spoken)
    wpm = round(words / (speech_seconds / 60), 1) if speech_seconds else None
    reasons = []
    if language_probability is not None and language_probability < MIN_LANGUAGE_PROBABILITY:
        reasons.append(f"language uncertain (p={language_probability:.2f})")
    if avg_logprob is not None and avg_logprob < MIN_AVG_LOGPROB:
        reasons.append(f"low confidence (mean log-probability {avg_logprob:.2f})")
    if no_speech is not None and no_speech > MAX_NO_SPEECH_PROB:
        reasons.append(f"text where no speech was heard (no-speech p={no_speech:.2f})")
    if wpm is not None and wpm > MAX_WORDS_PER_MINUTE:
        reasons.append(f"{wpm:.0f} words per minute of speech: repeated or invented text?")
    if wpm is not None and (speech_seconds or 0) >= MIN_SPEECH_FOR_RATE and wpm < MIN_WORDS_PER_MINUTE:
        reasons.append(f"{wpm:.0f} words per minute over {speech_seconds:.0f}s of speech: speech missed?")
    if gaps:
        reasons.append(describe(gaps))
    return Quality(language_probability, speech_seconds, avg_logprob, no_speech, wpm, reasons)


def drop_repeats(texts: Sequence[str], keep: int = 2) -> list[bool]:
    """Which segments to keep: a text repeated verbatim more than ``keep`` times in a row is a loop."""
    decisions = []
    run_text, run_length = None, 0
    for text in texts:
        normal = " ".join(text.lower().split())
        run_length = run_length + 1 if normal == run_text else 1
        run_text = normal
        decisions.append(run_length <= keep)
    return decisions
