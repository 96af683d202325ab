"""The database schema: recordings, their attempts (task runs) and transcript segments.

Status values live in one enum each; the database enforces them with CHECK constraints.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class RecordingStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class AttemptOutcome(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    TIMEOUT = "timeout"
    FAILED = "failed"
    LOST = "lost"


def _check_in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes everywhere; SQLite stores them naive, Postgres as timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # written by an SQLite trigger
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Recording(Base):
    """One audio file; the source of truth for what happens to it."""

    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(_check_in("status", RecordingStatus), name="status"),
        CheckConstraint("retry_count >= 0", name="retry_count"),
        Index("ix_recordings_status_not_before", "status", "not_before"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    file_path: Mapped[str] = mapped_column(Text)  # readable: what operators see and outputs are named after
    # The exact path (os.fsencode) where it is not readable as text: a name that is not UTF-8 or holds
    # control characters. NULL for every other file. ``names.real_path`` gives the path to open.
    file_path_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    file_name: Mapped[str] = mapped_column(Text)
    file_size: Mapped[int] = mapped_column(BigInteger)
    file_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)  # with the size: the file a restart knows
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(
        String(16), default=RecordingStatus.QUEUED.value, server_default=RecordingStatus.QUEUED.value, index=True
    )
    retry_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_message: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    transcript: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when task_id was handed to its sender
    # Not in the operator's vocabulary, but needed to be safe:
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)  # retry backoff
    current_attempt_id: Mapped[int | None] = mapped_column(Integer)  # the fence
    progress_seconds: Mapped[float | None] = mapped_column(Float)  # audio done so far
    # Seconds of work per second of audio in the attempt that finished it (doctor sizes limits with it).
    work_seconds_per_audio_second: Mapped[float | None] = mapped_column(Float)
    # Quality figures of the finished transcript (see quality.py for the bounds of needs_review).
    channels: Mapped[int | None] = mapped_column(Integer)  # 2 when the sides were transcribed apart
    language_probability: Mapped[float | None] = mapped_column(Float)
    speech_seconds: Mapped[float | None] = mapped_column(Float)
    avg_logprob: Mapped[float | None] = mapped_column(Float)
    no_speech_prob: Mapped[float | None] = mapped_column(Float)
    words_per_minute: Mapped[float | None] = mapped_column(Float)
    # Speech (found by VAD) that has no text after the repair: seconds, and JSON [{start, end, speaker?}, ...].
    uncovered_seconds: Mapped[float | None] = mapped_column(Float)
    uncovered_spans: Mapped[str | None] = mapped_column(Text)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    review_reasons: Mapped[str | None] = mapped_column(Text)
    # Who spoke when on a mono call (speakers.py): JSON [[start, end, speaker_index], ...], found once by the
    # first attempt that diarized and reused by every later one, so labels agree across resume points.
    speaker_turns: Mapped[str | None] = mapped_column(Text)
    # Why a mono call has no speaker turns when they were asked for (the transcript is kept without them).
    speaker_error: Mapped[str | None] = mapped_column(Text)
    # Speaker figures of the finished call (speakers.Figures as JSON): talk time, turns, overlap, silence.
    speaker_stats: Mapped[str | None] = mapped_column(Text)
    # The call's facts, read from its file name at intake (callfacts.py); NULL where the name does not say.
    phone_number: Mapped[str | None] = mapped_column(String(64), index=True)
    call_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    contact: Mapped[str | None] = mapped_column(Text)
    direction: Mapped[str | None] = mapped_column(String(16))
    # A call split into pieces (``pieces``): how every piece treats the channels ("mono" or "split"), fixed
    # once when it was cut so all pieces agree. NULL for a call transcribed in one piece.
    split_channels: Mapped[str | None] = mapped_column(String(8))


class PieceStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class Piece(Base):
    """One stretch of a long call, cut at a silence: a unit of work of its own (lifecycle.py).

    It has what a recording has to be worked on safely: status, retries with backoff, its
    own task message, the fence (``current_attempt_id``), a heartbeat and a resume point.
    The recording stays the one row operators see; its status, progress, ``retry_count``
    and ``error_message`` summarise its pieces. The rows go when the call is merged.
    """

    __tablename__ = "pieces"
    __table_args__ = (
        CheckConstraint(_check_in("status", PieceStatus), name="status"),
        CheckConstraint("retry_count >= 0", name="retry_count"),
        Index("ix_pieces_status_not_before", "status", "not_before"),
    )

    recording_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0, 1, ... in time order
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default=PieceStatus.QUEUED.value)
    retry_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_message: Mapped[str | None] = mapped_column(Text)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    task_id: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_attempt_id: Mapped[int | None] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    progress_seconds: Mapped[float | None] = mapped_column(Float)  # decoded up to here (the call's time)
    # What the finished piece found besides its segments, for the merge: the VAD's speech as JSON
    # [[start, end, speaker], ...] and the language.
    speech: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    language_probability: Mapped[float | None] = mapped_column(Float)


class Attempt(Base):
    """One task run of one recording (what Flower counts)."""

    __tablename__ = "attempts"
    __table_args__ = (
        CheckConstraint(_check_in("outcome", AttemptOutcome), name="outcome"),
        UniqueConstraint("recording_id", "attempt", name="uq_attempts_recording_attempt"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16), default=AttemptOutcome.RUNNING.value)
    error_message: Mapped[str | None] = mapped_column(Text)
    time_limit_seconds: Mapped[float | None] = mapped_column(Float)
    audio_start_seconds: Mapped[float | None] = mapped_column(Float)
    audio_end_seconds: Mapped[float | None] = mapped_column(Float)
    # The class of the failure (errors.cause_of): timeout, worker_lost, unreadable, io, ... ; NULL while running
    # and for successes. What ``transcriber_failures_total{cause}`` counts.
    cause: Mapped[str | None] = mapped_column(String(32))
    # The piece of a split call this attempt worked on (``pieces.idx``); NULL for a whole call, or its merge.
    piece: Mapped[int | None] = mapped_column(Integer)


class Segment(Base):
    """One transcript segment; subtitles are rebuilt from these."""

    __tablename__ = "segments"

    recording_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    attempt_id: Mapped[int | None] = mapped_column(Integer)
    speaker: Mapped[str | None] = mapped_column(String(64))
    avg_logprob: Mapped[float | None] = mapped_column(Float)
    no_speech_prob: Mapped[float | None] = mapped_column(Float)
    words: Mapped[str | None] = mapped_column(Text)  # JSON [[start, end, word, probability], ...] when enabled


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after WEBHOOK_MAX_ATTEMPTS; ``transcriber webhooks retry`` sends it again


class WebhookEvent(Base):
    """The outbox: one event, written in the transaction of the state change that causes it.

    ``body`` is the exact JSON that is POSTed (and signed), fixed when the event is written, so every
    redelivery of one ``event_id`` carries the same bytes. Events outlive their recording.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        CheckConstraint(_check_in("status", DeliveryStatus), name="status"),
        Index("ix_webhook_events_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    recording_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ServiceRun(Base):
    """When a periodic job (cleanup, dispatch) last ran, and what it did."""

    __tablename__ = "service_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    detail: Mapped[str | None] = mapped_column(Text)
