"""A recording's transcript as stored in the database, ready for the output writers."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from transcriber.coverage import Coverage
from transcriber.lifecycle import segment_of
from transcriber.outputs import TranscriptDoc
from transcriber.report import call_facts_of
from transcriber.segments import Segment
from transcriber.speakers import Figures
from transcriber.tables import Recording
from transcriber.tables import Segment as SegmentRow


def load_segments(session: Session, recording_id: uuid.UUID) -> list[Segment]:
    """The segments saved for a recording, in time order (one read serves the outputs and the transcript).

    Time, not save order: a repaired stretch is saved after the segments that follow it.
    """
    rows = session.scalars(
        select(SegmentRow).where(SegmentRow.recording_id == recording_id).order_by(SegmentRow.start, SegmentRow.idx)
    ).all()
    return [segment_of(r) for r in rows]


def document(
    recording: Recording,
    segments: list[Segment],
    *,
    model: str,
    language: str | None,
    duration: float | None,
    coverage: Coverage | None = None,
    speakers: Figures | None = None,
) -> TranscriptDoc:
    return TranscriptDoc(source=recording.file_name, segments=segments, language=language, duration=duration,
                         model=model, coverage=coverage, speakers=speakers, call=call_facts(recording))  # fmt: skip


def call_facts(recording: Recording) -> dict[str, Any] | None:
    """The call's facts read from its file name, as the json output shows them (only those known); ``None``."""
    return {key: value for key, value in call_facts_of(recording).items() if value} or None


def load_document(session: Session, recording: Recording, *, model: str) -> TranscriptDoc:
    """The segments saved for ``recording``, in order, with its language and duration."""
    segments = load_segments(session, recording.id)
    return document(recording, segments, model=model, language=recording.language, duration=recording.duration_seconds,
                    coverage=Coverage.stored(recording.speech_seconds, recording.uncovered_spans),
                    speakers=Figures.loads(recording.speaker_stats))  # fmt: skip
