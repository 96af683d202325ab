"""Who said what: speaker turns given to a transcript's words, and the speaker figures of a call.

Pure logic over times, testable without a model. Two sources of speakers meet here:

- a **mono call** diarized by ``diarization`` gives ``Turn``s (a speaker index per stretch of
  speech, 0 = who spoke first); ``assign`` gives every word the speaker whose turn it lies in,
  by the word's own timestamps, and splits a segment where the speaker changes inside it;
- a **two-channel call** already has one speaker per side (``decoding``, ``SPEAKER_LABELS``).

Either way ``figures`` measures the call from each speaker's speech: talk time and share,
turns, the longest monologue, overlap and silence; ``review_reason`` says when the turns
cannot be trusted (one voice found, or voices that barely differ).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from transcriber.coverage import clock
from transcriber.segments import Segment, Word

BACKCHANNEL_SECONDS = 1.0  # speech this short ("yes", "okay") inside another's turn does not end that turn
# Voices closer than this (cosine similarity of their mean embeddings) are flagged: the turns may mix them up.
# Measured with CAM++: the three people of shared/audio 0.35-0.53; espeak's en-us and en+f4 0.58-0.60 (turns
# right: confusion 0-1 %); en-us and en-gb+f3, which differ little more than in pitch, 0.74 (turns wrong).
CLOSE_VOICES = 0.7
ONE_VOICE_REVIEW_SECONDS = 30.0  # a call with this much speech and one voice found is flagged


@dataclass(frozen=True)
class Turn:
    """One stretch of one speaker's speech (seconds); ``speaker`` is 0-based, in order of first speech."""

    start: float
    end: float
    speaker: int


@dataclass(frozen=True)
class Diarization:
    """Who spoke when on a mono call: ``turns``, how many voices, and how alike the two closest are.

    Found once per recording and stored (``recordings.speaker_turns``), so every attempt
    and every resume point labels the call with the same speakers.
    """

    turns: tuple[Turn, ...]
    speakers: int
    similarity: float | None = None  # cosine similarity of the two closest voices' mean embeddings

    def to_json(self) -> dict[str, Any]:
        """The form on the model process's pipe and, as text, in ``recordings.speaker_turns``."""
        turns = [[round(t.start, 3), round(t.end, 3), t.speaker] for t in self.turns]
        return {"speakers": self.speakers, "similarity": self.similarity, "turns": turns}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Diarization:
        turns = tuple(Turn(float(a), float(b), int(k)) for a, b, k in data["turns"])
        return cls(turns, int(data["speakers"]), data.get("similarity"))

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    @classmethod
    def loads(cls, text: str | None) -> Diarization | None:
        return cls.from_json(json.loads(text)) if text else None

    def spans(self, labels: Sequence[str]) -> list[tuple[float, float, str]]:
        return [(t.start, t.end, labels[t.speaker]) for t in self.turns]


def names(count: int, configured: Sequence[str] = ()) -> list[str]:
    """Labels for ``count`` speakers in order of first speech: ``DIARIZE_LABELS``, then ``speaker N``."""
    return [configured[i] if i < len(configured) else f"speaker {i + 1}" for i in range(count)]


def windows_to_turns(windows: Sequence[tuple[float, float]], labels: Sequence[int],
                     speech: Sequence[tuple[float, float]]) -> list[Turn]:  # fmt: skip
    """Turns from labelled embedding windows: each window owns the time nearest its centre, within speech.

    ``windows`` overlap (1.5 s every 1.0 s); a change of speaker is placed half-way between
    the centres of the last window of one and the first of the other. Windows outside every
    ``speech`` span are ignored; labels are renumbered in order of first speech.
    """
    order: dict[int, int] = {}
    turns: list[Turn] = []
    ranked = sorted(((a + b) / 2, label) for (a, b), label in zip(windows, labels, strict=True))
    centres = [c for c, _ in ranked]
    for span_start, span_end in speech:
        first, last = bisect.bisect_left(centres, span_start), bisect.bisect_right(centres, span_end)
        for i in range(first, last):
            begin = span_start if i == first else (centres[i - 1] + centres[i]) / 2
            finish = span_end if i == last - 1 else (centres[i] + centres[i + 1]) / 2
            speaker = order.setdefault(ranked[i][1], len(order))
            if turns and turns[-1].speaker == speaker and abs(turns[-1].end - begin) < 1e-6:
                turns[-1] = replace(turns[-1], end=finish)
            else:
                turns.append(Turn(begin, finish, speaker))
    return turns


class _Finder:
    """Which turn a stretch of time belongs to: the one it overlaps most, else the nearest."""

    def __init__(self, turns: Sequence[Turn]) -> None:
        self.turns = sorted(turns, key=lambda t: t.start)
        self.starts = [t.start for t in self.turns]

    def speaker(self, start: float, end: float) -> int:
        right = bisect.bisect_left(self.starts, end)  # turns from here on start after the stretch ends
        best, best_overlap = None, 0.0
        i = right - 1
        while i >= 0 and i >= right - 8:  # turns do not overlap much: a few neighbours suffice
            turn = self.turns[i]
            overlap = min(end, turn.end) - max(start, turn.start)
            if overlap > best_overlap:
                best, best_overlap = turn.speaker, overlap
            i -= 1
        if best is not None:
            return best
        middle = (start + end) / 2
        near = self.turns[max(right - 1, 0) : right + 1]
        return min(near, key=lambda t: max(t.start - middle, middle - t.end, 0.0)).speaker


class Labeller:
    """Gives segments their speaker from a call's turns (``labels[i]`` names speaker ``i``)."""

    def __init__(self, turns: Sequence[Turn], labels: Sequence[str]) -> None:
        self.finder = _Finder(turns)
        self.labels = labels

    def pieces(self, segment: Segment) -> list[Segment]:
        """``segment`` with its speaker, split where the speaker changes between two of its words.

        A word goes to the turn it overlaps most (by its own timestamps, not the segment's
        midpoint), else to the nearest turn. One word between two words of the other speaker
        in the same segment stays with them: a turn boundary is only known to about 0.3 s.
        A segment without word timings goes whole to the turn it overlaps most.
        """
        labels, finder = self.labels, self.finder
        if not segment.words:
            return [replace(segment, speaker=labels[finder.speaker(segment.start, segment.end)])]
        who = _smoothed([finder.speaker(w[0], w[1]) for w in segment.words])
        runs = _runs(who)
        if len(runs) == 1:
            return [replace(segment, speaker=labels[who[0]])]
        out = []
        for first, last in runs:
            words: tuple[Word, ...] = segment.words[first : last + 1]
            start = segment.start if first == 0 else words[0][0]
            end = segment.end if last == len(segment.words) - 1 else words[-1][1]
            text = "".join(w[2] for w in words).strip()
            out.append(replace(segment, start=start, end=end, text=text, words=words, speaker=labels[who[first]]))
        return out


def assign(segments: Sequence[Segment], turns: Sequence[Turn], labels: Sequence[str]) -> list[Segment]:
    """The segments with their speakers (``Labeller.pieces``); with no turns, as they are."""
    if not turns:
        return list(segments)
    labeller = Labeller(turns, labels)
    return [piece for segment in segments for piece in labeller.pieces(segment)]


def _smoothed(who: list[int]) -> list[int]:
    """A lone word between two words of one other speaker takes theirs (boundary jitter, not a turn)."""
    result = list(who)
    for i in range(1, len(who) - 1):
        if who[i - 1] == who[i + 1] != who[i]:
            result[i] = who[i - 1]
    return result


def _runs(who: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i, speaker in enumerate(who):
        if runs and who[runs[-1][0]] == speaker:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


# ---------------------------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class SpeakerFigures:
    speaker: str
    talk_seconds: float
    share: float  # of all talk time
    turns: int
    longest_monologue_seconds: float


@dataclass(frozen=True)
class Figures:
    """How a call was spoken: per speaker, and for the call."""

    source: str  # "diarization" (mono, turns found by voice) or "channels" (one speaker per side)
    speakers: tuple[SpeakerFigures, ...]
    turns: int
    overlap_seconds: float
    silence_seconds: float
    similarity: float | None = None  # cosine similarity of the two voices (diarization only)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["speakers"] = [asdict(s) for s in self.speakers]
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json())

    @classmethod
    def loads(cls, text: str | None) -> Figures | None:
        if not text:
            return None
        data = json.loads(text)
        data["speakers"] = tuple(SpeakerFigures(**s) for s in data["speakers"])
        return cls(**data)

    def describe(self) -> list[str]:
        """Lines for ``status ID``: one per speaker, then the call's turns, overlap and silence."""
        lines = [
            f"{s.speaker}: {_minutes(s.talk_seconds)} ({s.share:.0%}), {s.turns} turns, "
            f"longest {_minutes(s.longest_monologue_seconds)}"
            for s in self.speakers
        ]
        lines.append(f"{self.turns} turns, overlap {_minutes(self.overlap_seconds)}, "
                     f"silence {_minutes(self.silence_seconds)} ({self.source})")  # fmt: skip
        return lines


def _minutes(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else clock(seconds)


def _union(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def _length(spans: Iterable[tuple[float, float]]) -> float:
    return sum(end - start for start, end in spans)


def figures(speech: Sequence[tuple[float, float, str]], duration: float, *, source: str,
            order: Sequence[str] = (), similarity: float | None = None) -> Figures:  # fmt: skip
    """Speaker figures from each speaker's speech ``(start, end, speaker)`` over a call of ``duration``.

    A turn is a run of one speaker's speech that another's does not interrupt; speech of
    another shorter than ``BACKCHANNEL_SECONDS`` ("yes", "okay") does not end it. The
    longest monologue is the longest such run, pauses inside it included. Overlap is time
    when two or more speak; silence is the call's time when no one does.
    """
    speakers = list(dict.fromkeys([*order, *(who for _, _, who in sorted(speech))]))
    own = {who: _union((a, b) for a, b, w in speech if w == who) for who in speakers}
    talk = {who: _length(spans) for who, spans in own.items()}
    total_talk = sum(talk.values())
    runs: list[list[Any]] = []  # [speaker, start, end]
    for start, end, who in sorted(speech):
        if runs and runs[-1][0] == who:
            runs[-1][2] = max(runs[-1][2], end)
        elif runs and end - start < BACKCHANNEL_SECONDS and start < runs[-1][2] + BACKCHANNEL_SECONDS:
            continue  # a backchannel inside (or right after) the current turn
        else:
            runs.append([who, start, end])
    everyone = _union((a, b) for a, b, _ in speech)
    overlap = _length(_union(_overlaps(own)))
    per = tuple(
        SpeakerFigures(
            speaker=who,
            talk_seconds=round(talk[who], 1),
            share=round(talk[who] / total_talk, 3) if total_talk else 0.0,
            turns=sum(1 for r in runs if r[0] == who),
            longest_monologue_seconds=round(max((r[2] - r[1] for r in runs if r[0] == who), default=0.0), 1),
        )
        for who in speakers
    )
    return Figures(source=source, speakers=per, turns=len(runs), overlap_seconds=round(overlap, 1),
                   silence_seconds=round(max(duration - _length(everyone), 0.0), 1),
                   similarity=None if similarity is None else round(similarity, 3))  # fmt: skip


def _overlaps(own: dict[str, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    found: list[tuple[float, float]] = []
    people = list(own)
    for i, a in enumerate(people):
        for b in people[i + 1 :]:
            j = 0
            for start, end in own[a]:
                while j < len(own[b]) and own[b][j][1] <= start:
                    j += 1
                k = j
                while k < len(own[b]) and own[b][k][0] < end:
                    found.append((max(start, own[b][k][0]), min(end, own[b][k][1])))
                    k += 1
    return [(a, b) for a, b in found if b > a]


def review_reason(found: int, max_speakers: int, speech_seconds: float, similarity: float | None) -> str | None:
    """Why the speaker turns of a diarized call need a person's look, or ``None`` when they look sound."""
    if found == 1 and max_speakers > 1 and speech_seconds >= ONE_VOICE_REVIEW_SECONDS:
        return f"speaker turns: one voice found in {_minutes(speech_seconds)} of speech (a call has two parties)"
    if similarity is not None and similarity > CLOSE_VOICES:
        return f"speaker turns: the voices are hard to tell apart (similarity {similarity:.2f}); check the labels"
    return None


@dataclass(frozen=True)
class CallSpeakers:
    """Who spoke on a finished call: the labeller for its segments, its speaker figures, and any doubt."""

    labeller: Labeller | None = None
    figures: Figures | None = None
    review: str | None = None


def of_call(found: Diarization | None, error: str | None, sides: Sequence[tuple[float, float, str | None]],
            duration: float, *, configured: Sequence[str], max_speakers: int,
            side_names: Sequence[str]) -> CallSpeakers:  # fmt: skip
    """A mono call's speakers from its turns (``found``, or the ``error`` that left it without);
    a two-channel call's from each side's speech (``sides``: VAD spans with the side's name).

    Segments are labelled only when two or more voices were found.
    """
    if found is not None and found.turns:
        labels = names(max(t.speaker for t in found.turns) + 1, configured)
        speech = _length(_union((t.start, t.end) for t in found.turns))
        stats = figures(found.spans(labels), duration, source="diarization", order=labels, similarity=found.similarity)
        review = review_reason(found.speakers, max_speakers, speech, found.similarity)
        # One voice (a voicemail, a message) keeps plain text: "speaker 1:" on every line would say nothing.
        return CallSpeakers(Labeller(found.turns, labels) if len(labels) > 1 else None, stats, review)
    if error:
        return CallSpeakers(review=f"speaker turns: none ({error})")
    spans = [(a, b, who) for a, b, who in sides if who]
    if spans:
        return CallSpeakers(figures=figures(spans, duration, source="channels", order=side_names))
    return CallSpeakers()
