"""Speech coverage: the speech that voice-activity detection hears, against the time that has text.

A transcript can be ``completed`` and still lack a stretch of clear speech: Whisper skipped
a window, or a loop was dropped. Coverage makes that visible. The speech of each side is
found by Silero VAD (bundled with faster-whisper); every segment that holds words covers
its time, widened by ``COVER_PAD`` (Whisper's timestamps are approximate). What speech is
left is uncovered: the decoder re-reads spans longer than ``REPAIR_SECONDS``
(``decoding.repair``), and what still has no text after that, if longer than
``REVIEW_SECONDS``, marks the recording ``needs_review`` with the spans named.

All functions but ``speech_spans`` are pure arithmetic over ``(start, end)`` seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from transcriber.segments import Segment

Span = tuple[float, float]

COVER_PAD = 0.5  # a segment with words covers its own time and this much on each side
REPAIR_SECONDS = 1.0  # uncovered speech at least this long is decoded again on its own
# A word covers at most this much from its start: Whisper's alignment can stretch one word over what it did not
# transcribe (" is" timed 9.86-13.92 s over the end of one reading of a number and the start of the next).
MAX_WORD_SECONDS = 1.0
REVIEW_SECONDS = 3.0  # uncovered speech this long, still without text after repair, needs review
JOIN_GAP = 1.0  # uncovered stretches closer than this are one stretch

# Silero VAD, tuned finer than faster-whisper's filter defaults (2 s of silence, 400 ms pad): the spans
# must follow pauses between sentences so that a missing sentence shows as its own stretch.
VAD_OPTIONS = {"threshold": 0.5, "min_speech_duration_ms": 250, "min_silence_duration_ms": 500, "speech_pad_ms": 200}


@dataclass(frozen=True)
class Gap:
    """A stretch of speech without text; ``speaker`` names the side on a two-channel call."""

    start: float
    end: float
    speaker: str | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"start": round(self.start, 2), "end": round(self.end, 2)}
        if self.speaker:
            data["speaker"] = self.speaker
        return data


def merge(spans: Iterable[Span], *, gap: float = 0.0) -> list[Span]:
    """Sorted, overlapping (or closer than ``gap``) spans joined; empty spans dropped."""
    merged: list[list[float]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def subtract(spans: Iterable[Span], cuts: Iterable[Span]) -> list[Span]:
    """The parts of ``spans`` outside every one of ``cuts``."""
    holes = merge(cuts)
    left: list[Span] = []
    for start, end in merge(spans):
        cursor = start
        for cut_start, cut_end in holes:
            if cut_end <= cursor or cut_start >= end:
                continue
            if cut_start > cursor:
                left.append((cursor, cut_start))
            cursor = max(cursor, cut_end)
            if cursor >= end:
                break
        if cursor < end:
            left.append((cursor, end))
    return left


def total(spans: Iterable[Span]) -> float:
    return sum(end - start for start, end in merge(spans))


def covered(segments: Iterable[Segment], *, speaker: str | None = None, pad: float = COVER_PAD) -> list[Span]:
    """The time covered by segments that hold words (of one side when ``speaker`` is given).

    With word timings, each word covers its own time (at most ``MAX_WORD_SECONDS`` of it):
    a segment stretched over two sentences while holding the words of one covers only that one.
    """
    spans: list[Span] = []
    for s in segments:
        if not s.text.strip() or (speaker is not None and s.speaker != speaker):
            continue
        if s.words:
            spans.extend((w[0] - pad, min(w[1], w[0] + MAX_WORD_SECONDS) + pad) for w in s.words if w[2].strip())
        else:
            spans.append((s.start - pad, s.end + pad))
    return merge(spans)


def uncovered(
    speech: Sequence[Span],
    segments: Iterable[Segment],
    *,
    speaker: str | None = None,
    min_seconds: float = REPAIR_SECONDS,
) -> list[Span]:
    """Speech without text: stretches closer than ``JOIN_GAP`` joined, those shorter than ``min_seconds`` dropped."""
    left = merge(subtract(speech, covered(segments, speaker=speaker)), gap=JOIN_GAP)
    return [(a, b) for a, b in left if b - a >= min_seconds]


@dataclass(frozen=True)
class Coverage:
    """Of one transcript: seconds of speech heard by VAD, and the stretches of it that have no text."""

    speech_seconds: float
    gaps: tuple[Gap, ...] = ()

    @property
    def uncovered_seconds(self) -> float:
        return round(sum(g.seconds for g in self.gaps), 2)

    def review_gaps(self, min_seconds: float = REVIEW_SECONDS) -> list[Gap]:
        return [g for g in self.gaps if g.seconds >= min_seconds]

    def gaps_json(self) -> str | None:
        return json.dumps([g.to_json() for g in self.gaps]) if self.gaps else None

    def to_json(self) -> dict[str, Any]:
        return {
            "speech_seconds": self.speech_seconds,
            "uncovered_seconds": self.uncovered_seconds,
            "uncovered": [g.to_json() for g in self.gaps],
        }

    @classmethod
    def stored(cls, speech_seconds: float | None, gaps_json: str | None) -> Coverage | None:
        """From a recording's columns (``None`` for one completed before coverage was measured)."""
        if speech_seconds is None:
            return None
        items = json.loads(gaps_json) if gaps_json else []
        return cls(speech_seconds, tuple(Gap(g["start"], g["end"], g.get("speaker")) for g in items))


def measure(speech: Sequence[Gap], segments: Sequence[Segment], *, min_seconds: float = REPAIR_SECONDS) -> Coverage:
    """Coverage of ``segments`` against the ``speech`` found on each side (``Gap.speaker`` names the side)."""
    sides = sorted({s.speaker for s in speech}, key=lambda s: s or "")
    gaps: list[Gap] = []
    for side in sides:
        spans = [(s.start, s.end) for s in speech if s.speaker == side]
        gaps.extend(Gap(a, b, side) for a, b in uncovered(spans, segments, speaker=side, min_seconds=min_seconds))
    seconds = sum(total((s.start, s.end) for s in speech if s.speaker == side) for side in sides)
    return Coverage(round(seconds, 2), tuple(sorted(gaps, key=lambda g: (g.start, g.speaker or ""))))


def clock(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` from an hour on)."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def describe(gaps: Sequence[Gap], *, limit: int = 5) -> str:
    """``22.6 s of speech without text at 04:24-04:46`` (the longest ``limit`` stretches named)."""
    seconds = sum(g.seconds for g in gaps)
    named = sorted(sorted(gaps, key=lambda g: -g.seconds)[:limit], key=lambda g: g.start)
    where = ", ".join(f"{clock(g.start)}-{clock(g.end)}" + (f" ({g.speaker})" if g.speaker else "") for g in named)
    more = f" and {len(gaps) - limit} more" if len(gaps) > limit else ""
    return f"{seconds:.1f} s of speech without text at {where}{more}"


def speech_spans(samples: Any, *, sample_rate: int = 16000, options: dict[str, Any] | None = None) -> list[Span]:
    """The speech in ``samples`` (float32 mono), as Silero VAD hears it, in seconds (``VAD_OPTIONS`` by default)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if samples.shape[0] < sample_rate // 10:
        return []
    found = get_speech_timestamps(samples, VadOptions(**(options or VAD_OPTIONS)), sampling_rate=sample_rate)
    return [(t["start"] / sample_rate, t["end"] / sample_rate) for t in found]
