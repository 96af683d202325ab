"""How a call's audio becomes segments: the main pass, then a repair of any speech left without text.

Runs inside the model process (``model_process``), with the loaded model; the benchmark
calls ``decode`` directly, so it measures this code and not a copy. The steps:

1. **Main pass.** faster-whisper over the audio from the resume point, with the configured
   options (one channel, or both sides of a two-channel call window by window, merged by time).
   A text repeated verbatim a third time in a row is a loop and is dropped.
2. **Coverage.** Silero VAD finds the speech of each side over the whole call; every segment
   with words (this attempt's and those saved by earlier attempts) covers its time
   (``coverage``). A dropped loop leaves its time uncovered too.
3. **Repair.** Each uncovered stretch longer than ``coverage.REPAIR_SECONDS`` is decoded again
   on its own, clipped with ``CONTEXT_SECONDS`` either side, with settings that skip nothing: no
   VAD or silence-based skipping, temperature fallback, no previous-text prompt, and the
   language detected for that stretch (unless ``WHISPER_LANGUAGE`` pins one). Its segments
   that fall inside the stretch are emitted; the worker stores them in time order.

What is still uncovered after that is measured at completion and flags the recording.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from transcriber import coverage
from transcriber.coverage import Gap, Span
from transcriber.quality import drop_repeats
from transcriber.segments import Segment

SAMPLE_RATE = 16000
SPLIT_WINDOW_SECONDS = 600.0  # two-channel calls are transcribed side by side in windows of this size
CONTEXT_SECONDS = 1.0  # audio kept either side of an uncovered stretch when it is decoded again
# Repaired text must be this sure (mean log-probability): the fallback at temperature 1.0 returns words for
# anything VAD calls speech. Real speech re-read measured -0.29 to -0.41; speech played backwards -0.99
# (bench/completeness.py). Below it the stretch stays without text, and flagged, rather than invented.
REPAIR_MIN_LOGPROB = -0.7
MAX_REPAIR_PIECE = 30.0  # a longer stretch is re-read in pieces of at most this (one Whisper window)
# Decoding options of the repair: nothing may be skipped, and the stretch's own language is detected.
REPAIR_OPTIONS: dict[str, Any] = {
    "vad_filter": False,
    "condition_on_previous_text": False,
    "hallucination_silence_threshold": None,
    "temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
}

RANDOM_SEED = 0

Emit = Callable[[Segment], None]


@dataclass
class Summary:
    """What a decode found besides its segments: the language and the speech heard on each side."""

    language: str | None = None
    language_probability: float | None = None
    speech: list[Gap] = field(default_factory=list)  # the VAD's speech, as spans with the side's speaker
    repaired: int = 0  # segments recovered by the repair


def decode(
    model: Any,
    sides: Sequence[Any],
    options: dict[str, Any],
    emit: Emit,
    *,
    start: float = 0.0,
    previous: Sequence[Segment] = (),
    speakers: Sequence[str] = ("caller", "callee"),
    first_piece: float | None = None,
    on_reached: Callable[[float], None] | None = None,
) -> Summary:
    """Decode ``sides`` (one mono array, or two channels) from ``start``, then repair; emit every segment.

    ``previous`` are the segments earlier attempts saved (their time counts as covered).
    ``first_piece`` (seconds) decodes that much on its own first, so an attempt under a
    short limit still finishes something; ``on_reached`` hears each point decoded up to.
    """
    import ctranslate2

    ctranslate2.set_random_seed(RANDOM_SEED)  # the temperature fallback samples: same audio, same transcript
    options = dict(options)
    repair = bool(options.pop("repair", True))
    duration = sides[0].shape[0] / SAMPLE_RATE
    names: list[str | None] = [None] if len(sides) == 1 else list(speakers[: len(sides)])
    produced: list[Segment] = []

    keep_words = bool(options.get("word_timestamps"))

    def keep(segment: Segment) -> None:
        produced.append(segment)  # with word timings when the decoder made them: coverage is then by word
        emit(segment if keep_words or segment.words is None else replace(segment, words=None))

    summary = Summary()
    if len(sides) == 1:
        begin = start
        if first_piece and start + first_piece < duration - 0.1:
            end = quiet_point(sides, start + first_piece, search=min(first_piece / 2, 10.0))
            _decode_range(model, sides[0], begin, end, options, None, summary, keep)
            begin = end
            if on_reached is not None:
                on_reached(end)
        _decode_range(model, sides[0], begin, duration, options, None, summary, keep, stream=True)
    else:
        _decode_sides(model, sides, start, duration, options, names, summary, keep, on_reached, first_piece)
    for samples, name in zip(sides, names, strict=True):
        speech = coverage.speech_spans(samples, sample_rate=SAMPLE_RATE)
        summary.speech.extend(Gap(a, b, name) for a, b in speech)
        if repair:
            done = [*previous, *produced]
            for gap in coverage.uncovered(speech, done, speaker=name):
                for segment in repair_gap(model, samples, gap, options, name, duration, done):
                    summary.repaired += 1
                    keep(segment)
    return summary


def repair_gap(
    model: Any,
    samples: Any,
    gap: Span,
    options: dict[str, Any],
    speaker: str | None,
    duration: float,
    existing: Sequence[Segment] = (),
) -> list[Segment]:
    """Segments heard in ``gap`` when it is decoded on its own with the repair's settings.

    Whisper's timestamps on a short clip run past its end (a 5-s clip: "0.0 -> 7.0"), so
    they are clipped to the audio decoded. A segment is kept when most of it lies in the
    stretch, or when it holds most of the stretch; not when the same words already stand
    at that time (the context either side was decoded only to help), nor when the model
    is unsure of it (``REPAIR_MIN_LOGPROB``): that stretch stays uncovered and is flagged.
    """
    found: list[Segment] = []
    start, end = gap
    piece_start = start
    while piece_start < end - 0.05:
        piece_end = min(end, piece_start + MAX_REPAIR_PIECE - 2 * CONTEXT_SECONDS)
        begin, stop = max(0.0, piece_start - CONTEXT_SECONDS), min(duration, piece_end + CONTEXT_SECONDS)
        call = {**options, **REPAIR_OPTIONS, "batch_size": 0}
        segments, _ = _decode_segments(model, samples, begin, stop, call, speaker)
        for segment in segments:
            clipped = replace(segment, start=max(segment.start, begin), end=min(max(segment.end, begin), stop))
            if (
                _confident(clipped)
                and _belongs(clipped, piece_start, piece_end)
                and not _already_said(clipped, [*existing, *found])
            ):
                found.append(clipped)
        piece_start = piece_end
    return found


def _confident(segment: Segment) -> bool:
    return segment.avg_logprob is None or segment.avg_logprob >= REPAIR_MIN_LOGPROB


def _belongs(segment: Segment, start: float, end: float) -> bool:
    """Most of the segment lies in ``[start, end]``, or it holds most of that stretch."""
    overlap = min(segment.end, end) - max(segment.start, start)
    length = max(segment.end - segment.start, 0.01)
    return bool(segment.text.strip()) and (overlap >= 0.5 * length or overlap >= 0.5 * (end - start))


def _already_said(segment: Segment, others: Sequence[Segment]) -> bool:
    """The same words on the same side at mostly the same time."""
    words = " ".join(segment.text.lower().split())
    for other in others:
        if other.speaker != segment.speaker or " ".join(other.text.lower().split()) != words:
            continue
        overlap = min(segment.end, other.end) - max(segment.start, other.start)
        if overlap >= 0.5 * min(segment.end - segment.start, other.end - other.start):
            return True
    return False


def transcriber_for(model: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The sequential decoder, or faster-whisper's batched pipeline when a batch size is set."""
    options = dict(options)
    batch_size = int(options.pop("batch_size", 0) or 0)
    if options.get("hallucination_silence_threshold"):
        options["word_timestamps"] = True  # faster-whisper needs word timings to find the silences
    if not getattr(getattr(model, "model", None), "is_multilingual", False):
        options.pop("multilingual", None)  # an English-only model has one language
    if batch_size <= 0:
        function = model.transcribe
    else:
        function = _batched(model).transcribe
        options.update(batch_size=batch_size, vad_filter=True)  # the batched pipeline chunks by voice activity
    accepted = inspect.signature(function).parameters
    return function, {k: v for k, v in options.items() if k in accepted}


_pipelines: dict[int, Any] = {}


def _batched(model: Any) -> Any:
    pipeline = _pipelines.get(id(model))
    if pipeline is None:
        from faster_whisper import BatchedInferencePipeline

        pipeline = _pipelines[id(model)] = BatchedInferencePipeline(model)
    return pipeline


def to_segment(seg: Any, offset: float, speaker: str | None) -> Segment:
    """faster-whisper's segment as ours, in the whole file's time (its words, when it timed them)."""
    words = None
    if seg.words:
        words = tuple((offset + w.start, offset + w.end, w.word, round(w.probability, 3)) for w in seg.words)
    return Segment(offset + seg.start, offset + seg.end, seg.text, speaker, seg.avg_logprob, seg.no_speech_prob, words)


def _decode(
    model: Any, samples: Any, begin: float, end: float, options: dict[str, Any], speaker: str | None
) -> tuple[Iterator[Segment], Any]:
    """Segments of ``samples[begin:end]`` (seconds) as they are decoded, in the whole file's time, and the
    decoder's info (``None`` for a piece too short to decode). A text heard a third time in a row is a loop,
    not speech: it is dropped, and its time is left to the repair."""
    piece = samples[int(begin * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    if piece.shape[0] < SAMPLE_RATE // 10:
        return iter(()), None
    transcribe, call_options = transcriber_for(model, options)
    segments, info = transcribe(piece, **call_options)
    return _without_loops(to_segment(seg, begin, speaker) for seg in segments), info


def _without_loops(segments: Iterable[Segment]) -> Iterator[Segment]:
    recent: list[str] = []
    for segment in segments:
        recent = (recent + [segment.text])[-3:]
        if drop_repeats(recent)[-1]:
            yield segment


def _decode_segments(
    model: Any, samples: Any, begin: float, end: float, options: dict[str, Any], speaker: str | None
) -> tuple[list[Segment], Any]:
    """All segments of ``samples[begin:end]`` at once (see ``_decode``)."""
    segments, info = _decode(model, samples, begin, end, options, speaker)
    return list(segments), info


def _decode_range(
    model: Any,
    samples: Any,
    begin: float,
    end: float,
    options: dict[str, Any],
    speaker: str | None,
    summary: Summary,
    emit: Emit,
    *,
    stream: bool = False,
) -> None:
    """One channel from ``begin`` to ``end``, each segment emitted as it is decoded (progress is saved as it goes)."""
    segments, info = _decode(model, samples, begin, end, options, speaker)
    for segment in segments:
        emit(segment)
    if info is not None and (summary.language is None or stream):
        summary.language, summary.language_probability = info.language, info.language_probability


def _decode_sides(
    model: Any,
    sides: Sequence[Any],
    offset: float,
    duration: float,
    options: dict[str, Any],
    speakers: Sequence[str | None],
    summary: Summary,
    emit: Emit,
    on_reached: Callable[[float], None] | None,
    first_piece: float | None = None,
) -> None:
    """A two-channel call: both sides window by window, merged by time, each segment with its speaker."""
    languages: list[tuple[float, str]] = []
    begin = offset
    window = first_piece or SPLIT_WINDOW_SECONDS
    while begin < duration - 0.1:
        search = min(window / 2, 10.0)
        end = quiet_point(sides, begin + window, search) if begin + window < duration else duration
        window = SPLIT_WINDOW_SECONDS
        merged: list[Segment] = []
        for samples, speaker in zip(sides, speakers, strict=False):
            segments, info = _decode_segments(model, samples, begin, end, options, speaker)
            merged.extend(segments)
            if info is not None:
                languages.append((info.language_probability, info.language))
        for segment in sorted(merged, key=lambda s: (s.start, s.end)):
            emit(segment)
        if on_reached is not None:
            on_reached(end)
        begin = end
    if languages:
        summary.language_probability, summary.language = max(languages)


def quiet_point(sides: Sequence[Any], near: float, search: float = 10.0) -> float:
    """The quietest 100 ms (all sides together) in the ``search`` seconds before ``near``: a cut between words."""
    import numpy as np

    frame = SAMPLE_RATE // 10
    lo, hi = max(int((near - search) * SAMPLE_RATE), 0), int(near * SAMPLE_RATE)
    energy = sum(np.square(side[lo:hi].astype(np.float64)) for side in sides)
    frames = energy[: (len(energy) // frame) * frame].reshape(-1, frame).sum(axis=1)
    return (lo + int(np.argmin(frames)) * frame + frame // 2) / SAMPLE_RATE if len(frames) else near
