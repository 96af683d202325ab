"""A recording's transcript as stored in the database, ready for the output writers."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from transcriber.outputs import TranscriptDoc
from transcriber.segments import Segment, words_from
from transcriber.tables import Recording
from transcriber.tables import Segment as SegmentRow


def load_segments(session: Session, recording_id: uuid.UUID) -> list[Segment]:
    """The segments saved for a recording, in order (one read serves the outputs and the transcript)."""
    rows = session.scalars(
        select(SegmentRow).where(SegmentRow.recording_id == recording_id).order_by(SegmentRow.idx)
    ).all()
    return [
        Segment(r.start, r.end, r.text, r.speaker, r.avg_logprob, r.no_speech_prob, words_from(r.words)) for r in rows
    ]


def document(
    recording: Recording, segments: list[Segment], *, model: str, language: str | None, duration: float | None
) -> TranscriptDoc:
    return TranscriptDoc(source=recording.file_name, segments=segments, language=language, duration=duration,
                         model=model)  # fmt: skip


def load_document(session: Session, recording: Recording, *, model: str) -> TranscriptDoc:
    """The segments saved for ``recording``, in order, with its language and duration."""
    segments = load_segments(session, recording.id)
    return document(recording, segments, model=model, language=recording.language, duration=recording.duration_seconds)
