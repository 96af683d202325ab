"""``transcriber transcribe FILE``: one file now, with no queue and no database."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from transcriber import speakers
from transcriber.audio import check_readable
from transcriber.coverage import Coverage, Gap, describe, measure
from transcriber.outputs import TranscriptDoc, write_outputs
from transcriber.runner import (
    Done,
    Info,
    Request,
    SupervisedModel,
    Turns,
    check_diarization,
    decode_options,
    diarize_option,
    model_config_for,
)
from transcriber.segments import Segment
from transcriber.settings import Settings


@dataclass(frozen=True)
class OneShotResult:
    text: str
    language: str | None
    duration: float | None
    files: list[Path]
    coverage: Coverage | None = None
    uncovered: str | None = None  # "22.6 s of speech without text at 04:24-04:46": listen there
    speakers: speakers.Figures | None = None
    speaker_review: str | None = None  # why the speaker turns need a look


def progress_line(done: float, total: float | None, width: int = 30) -> str:
    """``[#########.....]  42%  01:23 / 03:20`` (no total: just the time done)."""
    if not total:
        return f"{_mmss(done)} transcribed"
    fraction = max(0.0, min(done / total, 1.0))
    filled = int(round(fraction * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}  {_mmss(done)} / {_mmss(total)}"


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def transcribe_file(
    settings: Settings,
    path: Path,
    *,
    formats: Sequence[str],
    output_dir: Path | None = None,
    progress: TextIO | None = None,
) -> OneShotResult:
    """Transcribe ``path`` with the configured model; write ``formats`` beside it or in ``output_dir``."""
    check_readable(str(path))
    check_diarization(settings)
    stream = progress if progress is not None else sys.stderr
    show = stream.isatty()
    runner = SupervisedModel(model_config_for(settings))
    segments: list[Segment] = []
    duration: float | None = None
    language: str | None = None
    speech: tuple[Gap, ...] | None = None
    turns: Turns | None = None
    request = Request(str(path), 0.0, decode_options(settings), diarize=diarize_option(settings))
    try:
        for event in runner.transcribe(request, deadline=None):
            if isinstance(event, Info):
                duration = event.duration
            elif isinstance(event, Segment):
                segments.append(event)
                if show:
                    stream.write("\r" + progress_line(event.end, duration))
                    stream.flush()
            elif isinstance(event, Turns):
                turns = event
            elif isinstance(event, Done):
                language, speech = event.language, event.speech
    finally:
        runner.close()
        if show:
            stream.write("\r" + progress_line(duration or 0.0, duration) + "\n")
    segments.sort(key=lambda s: s.start)  # in time order, as the database reads them: repaired ones come last
    call = speakers.of_call(
        turns.found if turns else None, turns.error if turns else None,
        [(g.start, g.end, g.speaker) for g in speech or ()], duration or 0.0,
        configured=settings.diarize_names, max_speakers=settings.diarize_max_speakers, side_names=settings.speakers,
    )  # fmt: skip
    if call.labeller is not None:
        segments = [piece for segment in segments for piece in call.labeller.pieces(segment)]
    measured = measure(speech, segments) if speech is not None else None
    doc = TranscriptDoc(path.name, segments, language, duration, settings.whisper_model, measured, call.figures)
    stem = (output_dir or path.parent) / path.stem
    files = write_outputs(doc, stem, formats, redact=settings.redact, region=settings.phone_region)
    gaps = measured.review_gaps() if measured else []
    return OneShotResult(doc.text, language, duration, files, measured, describe(gaps) if gaps else None,
                         call.figures, call.review)  # fmt: skip
