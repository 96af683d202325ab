"""A recording's transcript as stored in the database, ready for the output writers."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from transcriber.outputs import TranscriptDoc
from transcriber.tables import Recording, Segment


def load_document(session: Session, recording: Recording, *, model: str) -> TranscriptDoc:
    """The segments saved for ``recording``, in order, with its language and duration."""
    rows = session.execute(
        select(Segment.start, Segment.end, Segment.text, Segment.speaker, Segment.words)
        .where(Segment.recording_id == recording.id)
        .order_by(Segment.idx)
    ).all()
    return TranscriptDoc(
        source=recording.file_name,
        segments=[(r.start, r.end, r.text, r.speaker, json.loads(r.words) if r.words else None) for r in rows],
        language=recording.language,
        duration=recording.duration_seconds,
        model=model,
    )
