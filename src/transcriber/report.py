"""Read-only views of the database for operators (``transcriber status``)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from transcriber.errors import TranscriberError
from transcriber.tables import Attempt, Recording, RecordingStatus


def summary(session: Session) -> dict[str, Any]:
    """Recordings by status and attempts by outcome (Flower counts attempts)."""
    by_status = dict(session.execute(select(Recording.status, func.count()).group_by(Recording.status)).all())
    by_outcome = dict(session.execute(select(Attempt.outcome, func.count()).group_by(Attempt.outcome)).all())
    recent_failed = session.execute(
        select(Recording.id, Recording.file_name, Recording.retry_count, Recording.error_message)
        .where(Recording.status == RecordingStatus.FAILED.value)
        .order_by(Recording.updated_at.desc())
        .limit(10)
    ).all()
    return {
        "recordings": {status.value: int(by_status.get(status.value, 0)) for status in RecordingStatus},
        "attempts": {str(k): int(v) for k, v in by_outcome.items()},
        "failed": [
            {"id": str(r.id), "file_name": r.file_name, "retry_count": r.retry_count, "error_message": r.error_message}
            for r in recent_failed
        ],
    }


def format_summary(data: dict[str, Any]) -> str:
    lines = ["recordings: " + "  ".join(f"{k} {v}" for k, v in data["recordings"].items())]
    if data["attempts"]:
        lines.append("attempts:   " + "  ".join(f"{k} {v}" for k, v in sorted(data["attempts"].items())))
    for row in data["failed"]:
        lines.append(f"failed {row['id'][:8]}  {_clip(row['file_name'], 30)}  {_clip(row['error_message'] or '', 36)}")
    return "\n".join(lines)


def find_recording(session: Session, ref: str) -> Recording:
    """A recording by full id or unique id prefix."""
    try:
        found = session.get(Recording, uuid.UUID(ref))
        if found is not None:
            return found
    except ValueError:
        pass
    matches = session.scalars(
        select(Recording).where(cast(Recording.id, String).like(f"{ref.replace('-', '')[:32]}%")).limit(2)
    ).all()
    if not matches:
        matches = session.scalars(select(Recording).where(cast(Recording.id, String).like(f"{ref}%")).limit(2)).all()
    if len(matches) != 1:
        raise TranscriberError(f"no recording {'uniquely ' if matches else ''}matches {ref!r}")
    return matches[0]


def recording_detail(session: Session, ref: str) -> dict[str, Any]:
    rec = find_recording(session, ref)
    attempts = session.scalars(select(Attempt).where(Attempt.recording_id == rec.id).order_by(Attempt.attempt)).all()
    return {
        "id": str(rec.id),
        "file_name": rec.file_name,
        "file_path": rec.file_path,
        "status": rec.status,
        "retry_count": rec.retry_count,
        "error_message": rec.error_message,
        "duration_seconds": rec.duration_seconds,
        "progress_seconds": rec.progress_seconds,
        "language": rec.language,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "heartbeat_at": rec.heartbeat_at,
        "worker": rec.worker,
        "attempts": [
            {
                "attempt": a.attempt,
                "outcome": a.outcome,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "time_limit_seconds": a.time_limit_seconds,
                "audio_start_seconds": a.audio_start_seconds,
                "audio_end_seconds": a.audio_end_seconds,
                "error_message": a.error_message,
            }
            for a in attempts
        ],
    }


def format_detail(data: dict[str, Any]) -> str:
    lines = [
        f"{data['id']}  {data['status']}",
        f"file:     {_clip(data['file_path'], 70)}",
        f"retries:  {data['retry_count']}   duration: {_secs(data['duration_seconds'])}"
        f"   done: {_secs(data['progress_seconds'])}",
    ]
    if data["error_message"]:
        lines.append(f"error:    {_clip(data['error_message'], 70)}")
    for a in data["attempts"]:
        span = f"{_secs(a['audio_start_seconds'])}->{_secs(a['audio_end_seconds'])}"
        limit = f"limit {_secs(a['time_limit_seconds'])}" if a["time_limit_seconds"] else "no limit"
        lines.append(
            f"  #{a['attempt']} {a['outcome']:<9} {span:<16} {limit:<14} {_clip(a['error_message'] or '', 30)}"
        )
    return "\n".join(lines)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
