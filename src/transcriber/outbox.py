"""The webhook outbox: events written in the transaction of the state change that causes them.

``emit`` is called by the lifecycle inside the same session (and so the same commit) as the
``UPDATE recordings`` it reports: an event exists exactly when its state change does, whatever
crashes after. ``webhooks.py`` delivers the rows later, from another process, so a slow or dead
receiver never holds up a transcription.

The body is fixed here, once: every delivery of one ``event_id`` sends (and signs) the same bytes.
"""

from __future__ import annotations

import enum
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from transcriber.errors import cause_of
from transcriber.tables import DeliveryStatus, Recording, WebhookEvent


class Event(enum.StrEnum):
    COMPLETED = "recording.completed"
    FAILED = "recording.failed"
    NEEDS_REVIEW = "recording.needs_review"


def emit(session: Session, recording_id: uuid.UUID, *events: Event, now: datetime) -> list[str]:
    """Write ``events`` for the recording as it stands now in this transaction; returns their ``event_id``s."""
    query = select(Recording).where(Recording.id == recording_id).execution_options(populate_existing=True)
    recording = session.execute(query).scalar_one_or_none()  # as this transaction's UPDATE left it
    if recording is None or not events:
        return []
    ids = [str(uuid.uuid4()) for _ in events]
    session.execute(
        insert(WebhookEvent),
        [
            {
                "event_id": event_id,
                "event": event.value,
                "recording_id": recording_id,
                "body": json.dumps(body_of(recording, event, event_id=event_id, now=now), ensure_ascii=False),
                "created_at": now,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for event, event_id in zip(events, ids, strict=True)
        ],
    )
    return ids


def body_of(recording: Recording, event: Event, *, event_id: str, now: datetime) -> dict[str, Any]:
    """The JSON every receiver gets: what happened, to which file, and the call's facts where known."""
    body: dict[str, Any] = {
        "event": event.value,
        "event_id": event_id,
        "occurred_at": now.isoformat(),
        "recording_id": str(recording.id),
        "file_name": recording.file_name,
        "status": recording.status,
        "error_message": recording.error_message,
        "retry_count": recording.retry_count,
        "duration_seconds": recording.duration_seconds,
        "needs_review": bool(recording.needs_review),
        "review_reasons": recording.review_reasons.split("; ") if recording.review_reasons else [],
    }
    if event is Event.FAILED:
        body["cause"] = cause_of("failed", recording.error_message)
    call = {
        "phone_number": recording.phone_number,
        "call_started_at": recording.call_started_at.isoformat() if recording.call_started_at else None,
        "contact": recording.contact,
        "direction": recording.direction,
    }
    body["call"] = {key: value for key, value in call.items() if value is not None} or None
    return body
