"""What happens to a recording: the only code that changes ``recordings`` and ``attempts``.

Life of a recording::

    register -> queued --dispatch--> (message) --claim--> processing
        processing --heartbeat/save_progress--> processing
        processing --complete--> completed
        processing --fail (retryable, retries left)--> queued (+backoff) --dispatch--> ...
        processing --fail (permanent, or retries spent)--> failed (cause kept)
        processing --rescue_stuck (no heartbeat)--> queued / failed, attempt "lost"
        any --reset / skip--> queued (error and retries cleared) / skipped; a running attempt is closed "lost"
        any --operator SQL--> queued (dispatch picks it up) or skipped (out for good)

A call longer than SPLIT_MIN_SECONDS is cut into pieces by the attempt that claimed it
(``plan_pieces``): it keeps piece 0, the others are queued. Each piece lives like a
recording of its own (claim_piece, heartbeat, complete_piece, fail -> retry or failed,
rescue), while the recording stays ``processing`` and summarises them. The attempt that
completes the last piece merges the call (``complete_recording``); a piece that fails for
good fails the recording with its cause. A recording queued again with pieces left (reset,
SQL, a merge that was rescued) goes on where they stand: failed pieces are queued again,
completed ones are kept, and a call whose pieces are all done is only merged.

A running attempt whose recording was changed under it (reset, skip, SQL) finds out
at its next heartbeat (the fence), writes nothing more and closes its own attempt
(``abandon_attempt``); a claim closes any attempt still marked running, so two
attempts of one recording never overlap.

Every state change is one transaction with a compare-and-set on status, and every
write by a running attempt is fenced by ``current_attempt_id``: a worker whose
recording was rescued and handed to another attempt cannot overwrite it.
Celery tasks, the watcher, the CLI and beat jobs call these functions; none of them
writes the tables directly. Each takes ``now`` so tests need no sleeping.
"""

from __future__ import annotations

import enum
import itertools
import json
import logging
import random
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transcriber import outbox
from transcriber.callfacts import CallFacts
from transcriber.coverage import Coverage, Gap, clock
from transcriber.errors import AttemptTimeout, LeaseLost, RetryableError, WorkerLost, cause_of
from transcriber.names import printable, real_path
from transcriber.outbox import Event
from transcriber.quality import ScoredSegment, assess
from transcriber.retry import RetryDecision, decide_after_error
from transcriber.segments import Segment, transcript_text, words_from
from transcriber.settings import Settings
from transcriber.speakers import Diarization, Figures, Labeller
from transcriber.tables import (
    Attempt,
    AttemptOutcome,
    Piece,
    PieceStatus,
    Recording,
    RecordingStatus,
    ServiceRun,
    utcnow,
)
from transcriber.tables import Segment as SegmentRow

log = logging.getLogger(__name__)

# Keys of the Postgres advisory locks that keep two beat processes from double-acting.
_LOCK_RESCUE = 0x7472_0001
_LOCK_DISPATCH = 0x7472_0002


@dataclass(frozen=True)
class RetryPolicy:
    """The numbers a failure decision needs, taken from the settings."""

    max_retries: int
    backoff_base: float
    backoff_cap: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.task_max_retries, settings.retry_backoff_seconds, settings.retry_backoff_max_seconds)

    def decide(self, *, cause: str, retryable: bool, retry_count: int, now: datetime) -> RetryDecision:
        """Requeue with backoff (jittered) or fail, for a unit of work that has been retried ``retry_count`` times."""
        return decide_after_error(cause=cause, retryable=retryable, retry_count=retry_count,
                                  max_retries=self.max_retries, now=now, backoff_base=self.backoff_base,
                                  backoff_cap=self.backoff_cap, jitter=random.random())  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """A recording held by one attempt; every later write is fenced by ``attempt_id``."""

    recording_id: uuid.UUID
    attempt_id: int
    attempt: int
    file_path: str
    file_name: str
    file_size: int
    content_sha256: str  # what the file held when it was registered
    duration_seconds: float | None
    resume_from: float
    next_segment_idx: int
    claimed_at: datetime | None = None
    file_path_bytes: bytes | None = None  # the exact name where ``file_path`` is only its readable form
    # A piece of a split call: its index and audio range, and how its channels are taken. ``merge``: this
    # attempt merges the finished pieces (after the last one, or as an attempt of its own).
    piece: int | None = None
    piece_start: float = 0.0
    piece_end: float | None = None
    split_channels: str | None = None
    merge: bool = False

    @property
    def audio_end(self) -> float | None:
        """Where this attempt's audio ends: its piece's end, or the call's."""
        return self.piece_end if self.piece_end is not None else self.duration_seconds

    @property
    def real_path(self) -> str:
        """The path to open (``file_path`` is what is stored and shown)."""
        return real_path(self.file_path, self.file_path_bytes)


# ---------------------------------------------------------------- registration


class Registered(enum.StrEnum):
    """What registering one file did."""

    CREATED = "created"  # a new queued recording: its message is to be sent
    UPDATED = "updated"  # the path's unclaimed recording now holds the file's new content (it grew)
    DUPLICATE = "duplicate"  # the same audio is already a recording


@dataclass(frozen=True)
class NewFile:
    """A settled file, hashed and probed, to become a queued recording.

    ``file_path`` and ``file_name`` are readable text; ``file_path_bytes`` is the exact
    path where that differs (see ``names.readable_path``). ``replaces`` is the recording
    this path registered before: while no attempt has claimed it, it takes the new content
    instead of a second recording being made.
    """

    file_path: str
    file_name: str
    file_size: int
    content_sha256: str
    task_id: str | None
    duration_seconds: float | None = None
    file_mtime_ns: int | None = None
    file_path_bytes: bytes | None = None
    replaces: uuid.UUID | None = None
    facts: CallFacts | None = None  # the call's number, start, contact and direction, read from its name


def register_recording(
    session: Session,
    *,
    file_path: str,
    file_name: str,
    file_size: int,
    content_sha256: str,
    now: datetime,
    duration_seconds: float | None = None,
    task_id: str | None = None,
    file_mtime_ns: int | None = None,
    file_path_bytes: bytes | None = None,
) -> tuple[Recording, bool]:
    """Add a ``queued`` recording, or return the one with the same audio.

    Returns ``(recording, created)``; the same content dropped twice is one recording.
    ``task_id`` is the id of the message the caller sends once this commits.
    """
    new = NewFile(file_path, file_name, file_size, content_sha256, task_id, duration_seconds, file_mtime_ns,
                  file_path_bytes)  # fmt: skip
    recording, outcome = _register_one(session, new, now=now)
    return recording, outcome is Registered.CREATED


def register_files(
    session: Session, files: Sequence[NewFile], *, now: datetime
) -> list[tuple[NewFile, Recording, Registered]]:
    """``register_recording`` for a batch: one query for known audio, one bulk insert.

    Returns ``(file, recording, outcome)`` per file, in order. Used by the watcher so
    that a folder of 10,000 files registers in seconds.
    """
    digests = {f.content_sha256 for f in files}
    known = {
        r.content_sha256: r for r in session.scalars(select(Recording).where(Recording.content_sha256.in_(digests)))
    }
    done: dict[int, tuple[Recording, Registered]] = {}
    fresh: dict[str, tuple[int, Recording]] = {}
    for i, f in enumerate(files):
        if f.content_sha256 in known:
            done[i] = known[f.content_sha256], Registered.DUPLICATE
        elif f.content_sha256 not in fresh:
            updated = _update_unclaimed(session, f, now=now)
            if updated is not None:
                known[f.content_sha256] = updated
                done[i] = updated, Registered.UPDATED
            else:
                fresh[f.content_sha256] = i, _queued_recording(f, now)
    try:
        with session.begin_nested():
            session.add_all(row for _, row in fresh.values())
    except IntegrityError:  # another watcher registered some meanwhile: the rest one by one, every field kept
        return [(f, *(done[i] if i in done else _register_one(session, f, now=now))) for i, f in enumerate(files)]
    results = []
    for i, f in enumerate(files):
        if i in done:
            results.append((f, *done[i]))
        else:
            first, row = fresh[f.content_sha256]
            results.append((f, row, Registered.CREATED if first == i else Registered.DUPLICATE))
    return results


def _register_one(session: Session, new: NewFile, *, now: datetime) -> tuple[Recording, Registered]:
    existing = session.scalar(select(Recording).where(Recording.content_sha256 == new.content_sha256))
    if existing is not None:
        return existing, Registered.DUPLICATE
    recording = _queued_recording(new, now)
    try:
        with session.begin_nested():
            session.add(recording)
    except IntegrityError:  # a second watcher registered it meanwhile
        existing = session.scalar(select(Recording).where(Recording.content_sha256 == new.content_sha256))
        assert existing is not None
        return existing, Registered.DUPLICATE
    return recording, Registered.CREATED


def _queued_recording(new: NewFile, now: datetime) -> Recording:
    """The one place a file becomes a row, so that no path through registration drops a field."""
    return Recording(
        id=uuid.uuid4(), file_path=new.file_path, file_name=new.file_name, file_size=new.file_size,
        file_path_bytes=new.file_path_bytes, content_sha256=new.content_sha256,
        duration_seconds=new.duration_seconds, file_mtime_ns=new.file_mtime_ns,
        status=RecordingStatus.QUEUED.value, retry_count=0, created_at=now, updated_at=now,
        task_id=new.task_id, dispatched_at=now if new.task_id else None,
        **({"phone_number": new.facts.phone_number, "call_started_at": new.facts.call_started_at,
            "contact": new.facts.contact, "direction": new.facts.direction} if new.facts else {}),
    )  # fmt: skip


def _update_unclaimed(session: Session, new: NewFile, *, now: datetime) -> Recording | None:
    """Give the path's earlier recording the file's new content, if it is queued and was never claimed.

    A file that grows in bursts is then one recording of its final content. Once an attempt
    has claimed it (compare-and-set on status and on having no attempts), it is left alone:
    that attempt fails with ``File changed`` and the new content becomes a recording of its own.
    The message already sent for the recording stays valid: it carries only the id.
    """
    if new.replaces is None:
        return None
    never_claimed = ~select(Attempt.id).where(Attempt.recording_id == new.replaces).exists()
    try:
        with session.begin_nested():
            result = session.execute(
                update(Recording)
                .where(
                    Recording.id == new.replaces,
                    Recording.status == RecordingStatus.QUEUED.value,
                    Recording.file_path == new.file_path,
                    never_claimed,
                )
                .values(
                    file_size=new.file_size,
                    content_sha256=new.content_sha256,
                    file_mtime_ns=new.file_mtime_ns,
                    duration_seconds=new.duration_seconds,
                    file_path_bytes=new.file_path_bytes,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
    except IntegrityError:  # a second watcher registered this content meanwhile
        return None
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Recording, new.replaces, populate_existing=True)


# ---------------------------------------------------------------- dispatch


def find_dispatchable(
    session: Session,
    *,
    now: datetime,
    live_task_ids: Collection[str] | None,
    limit: int = 1000,
    send_grace: float = 0.0,
) -> list[tuple[uuid.UUID, str | None, str]]:
    """Queued recordings that are due and have no live task message: (id, last task id, file name).

    ``live_task_ids`` are the task ids the broker holds (queued or reserved); a
    recording whose last dispatched ``task_id`` is not among them has no message
    (never sent, consumed, reset by SQL, or lost with a Redis flush). A task id that
    an attempt already claimed is spent even if the broker still holds it (the
    unacknowledged message of a worker that died, or of one still running when an
    operator set its recording back to ``queued`` in SQL). ``None`` means the broker
    could not be inspected: then only never-dispatched and spent ones count.
    A task id given less than ``send_grace`` seconds ago is left alone: its sender
    (the watcher, another dispatch) commits first and sends a moment later.
    """
    claimed = exists().where(Attempt.recording_id == Recording.id, Attempt.task_id == Recording.task_id)
    query = (
        select(Recording.id, Recording.task_id, Recording.file_name, Recording.dispatched_at, claimed.label("spent"))
        .where(Recording.status == RecordingStatus.QUEUED.value)
        .where(or_(Recording.not_before.is_(None), Recording.not_before <= now))
        .order_by(Recording.created_at)
        .limit(limit)
    )
    settled_before = now - timedelta(seconds=send_grace)
    rows = session.execute(query).all()
    return [
        (rid, tid, name)
        for rid, tid, name, handed, spent in rows
        if tid is None
        or spent
        or (live_task_ids is not None and tid not in live_task_ids and (handed is None or handed <= settled_before))
    ]


def mark_dispatched(
    session: Session, *, recording_id: uuid.UUID, previous_task_id: str | None, task_id: str, now: datetime
) -> bool:
    """Record the task id about to be sent; False if the recording changed meanwhile.

    Commit this, then send the message: a message never refers to a row that is
    not there, and a send that fails leaves a task id the broker lacks, which the
    next dispatch resends.
    """
    previous = Recording.task_id.is_(None) if previous_task_id is None else Recording.task_id == previous_task_id
    result = session.execute(
        update(Recording)
        .where(Recording.id == recording_id, Recording.status == RecordingStatus.QUEUED.value, previous)
        .values(task_id=task_id, dispatched_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def try_lock(session: Session, key: int) -> bool:
    """A transaction-scoped advisory lock on Postgres; SQLite serialises writers anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}))


def lock_dispatch(session: Session) -> bool:
    return try_lock(session, _LOCK_DISPATCH)


def lock_rescue(session: Session) -> bool:
    return try_lock(session, _LOCK_RESCUE)


# ---------------------------------------------------------------- claim and progress


def claim_recording(
    session: Session, *, recording_id: uuid.UUID, task_id: str | None, worker: str, now: datetime
) -> Claim | None:
    """Take a queued, due recording for one attempt, or return ``None``.

    The compare-and-set on ``status = 'queued'`` makes a second delivery of the same
    message (or a redelivery after a claim) a no-op.
    """
    claimed = session.execute(
        update(Recording)
        .where(
            Recording.id == recording_id,
            Recording.status == RecordingStatus.QUEUED.value,
            or_(Recording.not_before.is_(None), Recording.not_before <= now),
        )
        .values(
            status=RecordingStatus.PROCESSING.value,
            started_at=now,
            finished_at=None,
            heartbeat_at=now,
            worker=worker,
            task_id=task_id,
            progress_seconds=None,
            updated_at=now,
        )
        .returning(
            Recording.file_path,
            Recording.file_name,
            Recording.duration_seconds,
            Recording.file_size,
            Recording.content_sha256,
            Recording.file_path_bytes,
        )
        .execution_options(synchronize_session=False)
    ).first()
    if claimed is None:
        return None
    if has_pieces(session, recording_id):
        return _go_on_with_pieces(session, recording_id, task_id=task_id, worker=worker, now=now)
    file_path, file_name, duration, file_size, content_sha256, raw_path = claimed
    number = _next_attempt(session, recording_id)
    resume_from, next_idx = _resume_point(session, recording_id)
    _close_orphans(session, recording_id, now=now, by=number)
    attempt_id = _open_attempt(session, recording_id, number, task_id=task_id, worker=worker, now=now,
                               start=resume_from)  # fmt: skip
    session.execute(
        update(Recording)
        .where(Recording.id == recording_id)
        .values(current_attempt_id=attempt_id, progress_seconds=resume_from or None)
        .execution_options(synchronize_session=False)
    )
    return Claim(
        recording_id, attempt_id, number, file_path, file_name, file_size, content_sha256, duration, resume_from,
        next_idx, now, raw_path,
    )  # fmt: skip


def _next_attempt(session: Session, recording_id: uuid.UUID) -> int:
    """The next attempt number of a recording (the caller holds its row, so two claims never draw the same)."""
    top = session.scalar(select(func.max(Attempt.attempt)).where(Attempt.recording_id == recording_id))
    return int(top or 0) + 1


def _open_attempt(
    session: Session,
    recording_id: uuid.UUID,
    number: int,
    *,
    task_id: str | None,
    worker: str,
    now: datetime,
    start: float | None,
    piece: int | None = None,
) -> int:
    return int(
        session.execute(
            insert(Attempt)
            .values(
                recording_id=recording_id,
                attempt=number,
                task_id=task_id,
                worker=worker,
                started_at=now,
                outcome=AttemptOutcome.RUNNING.value,
                audio_start_seconds=start,
                piece=piece,
            )  # fmt: skip
            .returning(Attempt.id)
        ).scalar_one()
    )


# ---------------------------------------------------------------- pieces of a long call

# A piece's segments are numbered from ``idx * SEGMENTS_PER_PIECE``: pieces decoded at once never collide.
SEGMENTS_PER_PIECE = 1_000_000


def has_pieces(session: Session, recording_id: uuid.UUID) -> bool:
    return session.scalar(select(exists().where(Piece.recording_id == recording_id))) or False


def _recording_keeps_pieces() -> ColumnElement[bool]:
    """A piece's writes count while its recording is being worked on, waits for a retry, or failed through
    another piece (a reset goes on from what is done); not once it is skipped (or deleted)."""
    return exists().where(
        Recording.id == Piece.recording_id,
        Recording.status.in_([RecordingStatus.PROCESSING.value, RecordingStatus.QUEUED.value,
                              RecordingStatus.FAILED.value]),
    )  # fmt: skip


def plan_pieces(
    session: Session, claim: Claim, *, cuts: Sequence[float], duration: float, channels: str, now: datetime
) -> Claim:
    """Cut the claimed call at ``cuts`` (seconds): this attempt keeps piece 0, the others are queued for any
    worker (their messages are sent after commit: ``find_dispatchable_pieces``). Returns the claim of piece 0.
    """
    task_id, worker = session.execute(
        select(Recording.task_id, Recording.worker).where(Recording.id == claim.recording_id)
    ).one()
    _fenced_update(session, claim, current_attempt_id=None, split_channels=channels, duration_seconds=duration,
                   heartbeat_at=now, updated_at=now, progress_seconds=None)  # fmt: skip
    bounds = [0.0, *cuts, duration]
    session.execute(
        insert(Piece),
        [
            {"recording_id": claim.recording_id, "idx": i, "start_seconds": a, "end_seconds": b, "retry_count": 0,
             "status": (PieceStatus.PROCESSING if i == 0 else PieceStatus.QUEUED).value, "updated_at": now,
             **({"current_attempt_id": claim.attempt_id, "task_id": task_id, "worker": worker, "started_at": now,
                 "heartbeat_at": now} if i == 0 else {})}
            for i, (a, b) in enumerate(itertools.pairwise(bounds))
        ],
    )  # fmt: skip
    session.execute(
        update(Attempt)
        .where(Attempt.id == claim.attempt_id)
        .values(piece=0, audio_start_seconds=0.0)
        .execution_options(synchronize_session=False)
    )
    log.info("recording %s: cut into %d pieces at %s", claim.recording_id, len(bounds) - 1,
             ", ".join(clock(c) for c in cuts))  # fmt: skip
    return replace(claim, piece=0, piece_start=0.0, piece_end=bounds[1], split_channels=channels,
                   duration_seconds=duration, resume_from=0.0, next_segment_idx=0)  # fmt: skip


def claim_piece(
    session: Session, *, recording_id: uuid.UUID, piece: int, task_id: str | None, worker: str, now: datetime
) -> Claim | None:
    """Take a queued, due piece of a recording being worked on, or return ``None`` (compare-and-set, as for
    recordings: a second delivery of one message is a no-op)."""
    taken = session.execute(
        update(Piece)
        .where(
            Piece.recording_id == recording_id,
            Piece.idx == piece,
            Piece.status == PieceStatus.QUEUED.value,
            or_(Piece.not_before.is_(None), Piece.not_before <= now),
            exists().where(Recording.id == Piece.recording_id, Recording.status == RecordingStatus.PROCESSING.value),
        )
        .values(
            status=PieceStatus.PROCESSING.value,
            started_at=now,
            finished_at=None,
            heartbeat_at=now,
            worker=worker,
            task_id=task_id,
            updated_at=now,
        )  # fmt: skip
        .returning(Piece.start_seconds, Piece.end_seconds)
        .execution_options(synchronize_session=False)
    ).first()
    if taken is None:
        return None
    start, end = taken
    row = _call_of(session, recording_id, lock=True)  # one claim at a time: attempt numbers are drawn under it
    number = _next_attempt(session, recording_id)
    resume_from, next_idx = _piece_resume_point(session, recording_id, piece, start)
    _close_orphans(session, recording_id, now=now, by=number, piece=piece)
    attempt_id = _open_attempt(session, recording_id, number, task_id=task_id, worker=worker, now=now,
                               start=resume_from, piece=piece)  # fmt: skip
    session.execute(
        update(Piece)
        .where(Piece.recording_id == recording_id, Piece.idx == piece)
        .values(current_attempt_id=attempt_id, progress_seconds=resume_from)
        .execution_options(synchronize_session=False)
    )
    _summarise(session, recording_id, now=now)
    return Claim(recording_id, attempt_id, number, row.file_path, row.file_name, row.file_size, row.content_sha256,
                 row.duration_seconds, resume_from, next_idx, now, row.file_path_bytes, piece=piece, piece_start=start,
                 piece_end=end, split_channels=row.split_channels)  # fmt: skip


def _call_of(session: Session, recording_id: uuid.UUID, *, lock: bool = False) -> Any:
    """What a claim of one of a split call's pieces (or its merge) needs of the recording, in one read."""
    query = select(Recording.file_path, Recording.file_name, Recording.file_size, Recording.content_sha256,
                   Recording.duration_seconds, Recording.file_path_bytes,
                   Recording.split_channels).where(Recording.id == recording_id)  # fmt: skip
    return session.execute(query.with_for_update() if lock else query).one()


def _piece_resume_point(session: Session, recording_id: uuid.UUID, piece: int, start: float) -> tuple[float, int]:
    """Where an attempt of a piece starts: after what earlier attempts of that piece saved or decoded."""
    first = piece * SEGMENTS_PER_PIECE
    mine = and_(SegmentRow.recording_id == recording_id, SegmentRow.idx >= first,
                SegmentRow.idx < first + SEGMENTS_PER_PIECE)  # fmt: skip
    saved_end, last_idx = session.execute(select(func.max(SegmentRow.end), func.max(SegmentRow.idx)).where(mine)).one()
    reached = session.scalar(
        select(func.max(Attempt.audio_end_seconds)).where(Attempt.recording_id == recording_id, Attempt.piece == piece)
    )
    resume = max(start, float(saved_end or 0.0), float(reached or 0.0))
    return resume, (int(last_idx) + 1 if last_idx is not None else first)


def _go_on_with_pieces(
    session: Session, recording_id: uuid.UUID, *, task_id: str | None, worker: str, now: datetime
) -> Claim | None:
    """A split recording queued again (reset, SQL, a rescued merge) goes on from where its pieces stand.

    Failed pieces, and any left ``processing`` without a running attempt, are queued again with their
    retries cleared; completed ones are kept. This attempt takes the first due piece, or merges the call
    when all are done; ``None`` when the rest is in flight (their attempts finish the call).
    """
    orphaned = and_(
        Piece.status == PieceStatus.PROCESSING.value,
        ~exists().where(Attempt.id == Piece.current_attempt_id, Attempt.outcome == AttemptOutcome.RUNNING.value),
    )
    session.execute(
        update(Piece)
        .where(Piece.recording_id == recording_id, or_(Piece.status == PieceStatus.FAILED.value, orphaned))
        .values(
            status=PieceStatus.QUEUED.value,
            retry_count=0,
            error_message=None,
            not_before=None,
            task_id=None,
            current_attempt_id=None,
            updated_at=now,
        )  # fmt: skip
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Recording)
        .where(Recording.id == recording_id)
        .values(current_attempt_id=None, finished_at=None)
        .execution_options(synchronize_session=False)
    )
    first = session.scalar(
        select(Piece.idx)
        .where(
            Piece.recording_id == recording_id,
            Piece.status == PieceStatus.QUEUED.value,
            or_(Piece.not_before.is_(None), Piece.not_before <= now),
        )  # fmt: skip
        .order_by(Piece.idx)
        .limit(1)
    )
    if first is not None:
        return claim_piece(session, recording_id=recording_id, piece=first, task_id=task_id, worker=worker, now=now)
    left = session.scalar(
        select(func.count()).where(Piece.recording_id == recording_id, Piece.status != PieceStatus.COMPLETED.value)
    )
    if left:
        _summarise(session, recording_id, now=now)
        return None
    row = _call_of(session, recording_id)
    number = _next_attempt(session, recording_id)
    _close_orphans(session, recording_id, now=now, by=number)
    end = float(row.duration_seconds or 0.0)
    attempt_id = _open_attempt(session, recording_id, number, task_id=task_id, worker=worker, now=now, start=end)
    session.execute(
        update(Recording)
        .where(Recording.id == recording_id)
        .values(current_attempt_id=attempt_id, progress_seconds=row.duration_seconds)
        .execution_options(synchronize_session=False)
    )
    return Claim(recording_id, attempt_id, number, row.file_path, row.file_name, row.file_size, row.content_sha256,
                 row.duration_seconds, end, 0, now, row.file_path_bytes, split_channels=row.split_channels,
                 merge=True)  # fmt: skip


def _summarise(
    session: Session, recording_id: uuid.UUID, *, now: datetime, error: str | None = None, failed: bool = False
) -> bool:
    """The recording as the sum of its pieces: progress, heartbeat and the retries of its most retried piece;
    ``error`` becomes its error message (a piece's retry, or with ``failed`` the cause that fails the call).
    False when the recording is not being worked on (failed through another piece, reset, skipped)."""
    done = (
        select(func.coalesce(func.sum(
            case((Piece.status == PieceStatus.COMPLETED.value, Piece.end_seconds),
                 else_=func.coalesce(Piece.progress_seconds, Piece.start_seconds)) - Piece.start_seconds), 0.0))
        .where(Piece.recording_id == recording_id)
        .scalar_subquery()
    )  # fmt: skip
    retries = (
        select(func.coalesce(func.max(Piece.retry_count), 0)).where(Piece.recording_id == recording_id)
    ).scalar_subquery()
    values: dict[str, object] = {"progress_seconds": done, "retry_count": retries, "heartbeat_at": now,
                                 "updated_at": now}  # fmt: skip
    if error is not None:
        values["error_message"] = error
    if failed:
        values.update(status=RecordingStatus.FAILED.value, finished_at=now, task_id=None)
    result = session.execute(
        update(Recording)
        .where(Recording.id == recording_id, Recording.status == RecordingStatus.PROCESSING.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def _piece_said(session: Session, recording_id: uuid.UUID, piece: int, start: float, end: float, message: str) -> str:
    """A piece's error as the recording shows it: which piece, where in the call, then the cause."""
    count = session.scalar(select(func.count()).where(Piece.recording_id == recording_id)) or 0
    return f"Piece {piece + 1} of {count} ({clock(start)}-{clock(end)}): {message}"


def complete_piece(
    session: Session,
    claim: Claim,
    *,
    now: datetime,
    speech: Sequence[Gap],
    language: str | None,
    language_probability: float | None,
) -> Claim | None:
    """Mark a piece done with what it found (fenced). When it was the last, this attempt holds the recording
    to merge it: the merge claim is returned and the attempt stays open until ``complete_recording``."""
    _fenced_update(session, claim, status=PieceStatus.COMPLETED.value, finished_at=now, heartbeat_at=now,
                   updated_at=now, progress_seconds=claim.piece_end, not_before=None, error_message=None,
                   speech=json.dumps([[g.start, g.end, g.speaker] for g in speech]), language=language,
                   language_probability=language_probability)  # fmt: skip
    session.execute(select(Recording.id).where(Recording.id == claim.recording_id).with_for_update())
    left = session.scalar(
        select(func.count()).where(
            Piece.recording_id == claim.recording_id, Piece.status != PieceStatus.COMPLETED.value
        )  # fmt: skip
    )
    merging = 0
    if not left:  # the last piece: the recording is this attempt's to merge (unless it was reset meanwhile)
        merging = session.execute(
            update(Recording)
            .where(
                Recording.id == claim.recording_id,
                Recording.status == RecordingStatus.PROCESSING.value,
                Recording.current_attempt_id.is_(None),
            )  # fmt: skip
            .values(current_attempt_id=claim.attempt_id)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    _summarise(session, claim.recording_id, now=now)
    if merging != 1:
        _close_attempt(session, claim.attempt_id, now=now, outcome=AttemptOutcome.SUCCEEDED, error=None,
                       end=claim.piece_end)  # fmt: skip
        return None
    return replace(claim, piece=None, merge=True)


def merged_pieces(session: Session, recording_id: uuid.UUID) -> tuple[list[Gap], str | None, float | None]:
    """What the pieces of a split call found, for its merge: the speech VAD heard over the whole call, and the
    language of most of its audio with the mean certainty of the pieces that heard it."""
    rows = session.execute(
        select(Piece.speech, Piece.language, Piece.language_probability, Piece.start_seconds, Piece.end_seconds)
        .where(Piece.recording_id == recording_id)
        .order_by(Piece.idx)
    ).all()
    speech = [Gap(float(a), float(b), who) for r in rows for a, b, who in json.loads(r.speech or "[]")]
    heard: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.language:
            heard.setdefault(r.language, []).append((r.end_seconds - r.start_seconds, r.language_probability or 0.0))
    if not heard:
        return speech, None, None
    language, spans = max(heard.items(), key=lambda item: sum(length for length, _ in item[1]))
    total = sum(length for length, _ in spans) or 1.0
    return speech, language, sum(length * p for length, p in spans) / total


def find_dispatchable_pieces(
    session: Session,
    *,
    now: datetime,
    live_task_ids: Collection[str] | None,
    limit: int = 1000,
    send_grace: float = 0.0,
) -> list[tuple[uuid.UUID, int, str | None, str]]:
    """Queued, due pieces of recordings being worked on that have no live message:
    (recording id, piece, last task id, file name); the rules are ``find_dispatchable``'s."""
    claimed = exists().where(Attempt.recording_id == Piece.recording_id, Attempt.task_id == Piece.task_id)
    rows = session.execute(
        select(Piece.recording_id, Piece.idx, Piece.task_id, Recording.file_name, Piece.dispatched_at,
               claimed.label("spent"))
        .join(Recording, Recording.id == Piece.recording_id)
        .where(Piece.status == PieceStatus.QUEUED.value, Recording.status == RecordingStatus.PROCESSING.value)
        .where(or_(Piece.not_before.is_(None), Piece.not_before <= now))
        .order_by(Recording.created_at, Piece.idx)
        .limit(limit)
    ).all()  # fmt: skip
    return [(rid, idx, tid, name) for rid, idx, tid, name, handed, spent in rows
            if _without_message(tid, spent, handed, live_task_ids, now - timedelta(seconds=send_grace))]  # fmt: skip


def _without_message(
    task_id: str | None, spent: bool, handed: datetime | None, live: Collection[str] | None, settled_before: datetime
) -> bool:
    """No live message carries this unit of work (see ``find_dispatchable``)."""
    return (
        task_id is None
        or spent
        or (live is not None and task_id not in live and (handed is None or handed <= settled_before))
    )


def mark_piece_dispatched(
    session: Session,
    *,
    recording_id: uuid.UUID,
    piece: int,
    previous_task_id: str | None,
    task_id: str,
    now: datetime,
) -> bool:
    """``mark_dispatched`` for one piece."""
    previous = Piece.task_id.is_(None) if previous_task_id is None else Piece.task_id == previous_task_id
    result = session.execute(
        update(Piece)
        .where(
            Piece.recording_id == recording_id, Piece.idx == piece, Piece.status == PieceStatus.QUEUED.value, previous
        )  # fmt: skip
        .values(task_id=task_id, dispatched_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def _close_orphans(
    session: Session, recording_id: uuid.UUID, *, now: datetime, by: int, piece: int | None = None
) -> None:
    """Close attempts still marked running: the recording was queued, so none of them holds it any more.

    They are left by an operator who set a processing recording back to ``queued`` in
    SQL while its worker ran; that worker stops at its next heartbeat. Closing them here
    keeps two attempts of one recording from ever overlapping in ``attempts``. For a piece, only that
    piece's attempts count (the other pieces of the call run meanwhile, as they should).
    """
    what = "recording" if piece is None else "piece"
    reason = f"Superseded: the {what} was queued again while this attempt ran; attempt {by} took it"
    same = Attempt.piece.is_(None) if piece is None else Attempt.piece == piece
    session.execute(
        update(Attempt)
        .where(Attempt.recording_id == recording_id, Attempt.outcome == AttemptOutcome.RUNNING.value, same)
        .values(
            outcome=AttemptOutcome.LOST.value,
            finished_at=now,
            error_message=reason,
            cause=cause_of(AttemptOutcome.LOST.value, reason),
        )
        .execution_options(synchronize_session=False)
    )


def _resume_point(session: Session, recording_id: uuid.UUID) -> tuple[float, int]:
    """Where this attempt starts: after the saved segments of an interrupted attempt.

    Segments left by a completed run (an operator re-queued a finished recording)
    are discarded: that is a request to transcribe again from the start.
    """
    last_outcome = session.scalar(
        select(Attempt.outcome)
        .where(Attempt.recording_id == recording_id, Attempt.outcome != AttemptOutcome.RUNNING.value)
        .order_by(Attempt.attempt.desc())
        .limit(1)
    )
    if last_outcome == AttemptOutcome.SUCCEEDED.value:
        session.execute(delete(SegmentRow).where(SegmentRow.recording_id == recording_id))
        session.execute(
            update(Recording)
            .where(Recording.id == recording_id)
            .values(speaker_turns=None, speaker_error=None)  # found again with the new transcript
            .execution_options(synchronize_session=False)
        )
        return 0.0, 0
    row = session.execute(
        select(func.max(SegmentRow.end), func.count(), func.max(SegmentRow.idx)).where(
            SegmentRow.recording_id == recording_id
        )
    ).one()
    last_success = select(func.coalesce(func.max(Attempt.attempt), 0)).where(
        Attempt.recording_id == recording_id, Attempt.outcome == AttemptOutcome.SUCCEEDED.value
    )
    reached = session.scalar(  # decoded up to here without a word to save (silence, a short limit's first piece)
        select(func.max(Attempt.audio_end_seconds)).where(
            Attempt.recording_id == recording_id, Attempt.attempt > last_success.scalar_subquery()
        )
    )
    resume = max(float(row[0] or 0.0), float(reached or 0.0))
    return resume, (int(row[2]) + 1 if row[1] else 0)


def timeouts_without_progress(session: Session, claim: Claim) -> int:
    """How many attempts in a row, just before this one, ran out of time where this one begins."""
    rows = session.execute(
        select(Attempt.outcome, Attempt.audio_start_seconds, Attempt.audio_end_seconds)
        .where(Attempt.recording_id == claim.recording_id, Attempt.attempt < claim.attempt)
        .where(Attempt.piece.is_(None) if claim.piece is None else Attempt.piece == claim.piece)
        .order_by(Attempt.attempt.desc())
        .limit(20)
    ).all()
    stalled = 0
    for outcome, start, end in rows:
        began_here = abs((start or 0.0) - claim.resume_from) < 0.01
        if outcome != AttemptOutcome.TIMEOUT.value or not began_here or (end or 0.0) > claim.resume_from + 0.01:
            break
        stalled += 1
    return stalled


def set_attempt_plan(
    session: Session, claim: Claim, *, duration_seconds: float | None, time_limit: float | None
) -> None:
    """Store the probed duration (of a whole call) and the attempt's effective time limit."""
    if claim.piece is None:
        _fenced_update(session, claim, duration_seconds=duration_seconds)
    else:
        _fenced_update(session, claim, updated_at=utcnow())
    session.execute(
        update(Attempt)
        .where(Attempt.id == claim.attempt_id)
        .values(time_limit_seconds=time_limit)
        .execution_options(synchronize_session=False)
    )


def save_progress(
    session: Session,
    claim: Claim,
    *,
    now: datetime,
    first_idx: int,
    segments: Sequence[Segment],
    progress_seconds: float | None,
) -> None:
    """Heartbeat, and save the segments produced since the last call (fenced).

    Raises ``LeaseLost`` if the recording no longer belongs to this attempt.
    """
    values: dict[str, object] = {"heartbeat_at": now, "updated_at": now}
    if progress_seconds is not None:
        values["progress_seconds"] = progress_seconds
    _fenced_update(session, claim, **values)
    if segments:
        session.execute(
            insert(SegmentRow), [_segment_row(claim, first_idx + i, seg, claim.attempt_id) for i, seg in
                                 enumerate(segments)]
        )  # fmt: skip
    reached = progress_seconds if progress_seconds is not None else (segments[-1].end if segments else None)
    if reached is not None:  # how far this attempt got (a repaired segment may end earlier than the rest)
        session.execute(
            update(Attempt)
            .where(Attempt.id == claim.attempt_id)
            .values(
                audio_end_seconds=case((Attempt.audio_end_seconds > reached, Attempt.audio_end_seconds), else_=reached)
            )
            .execution_options(synchronize_session=False)
        )
    if claim.piece is not None:
        _summarise(session, claim.recording_id, now=now)


def save_speaker_turns(
    session: Session, claim: Claim, *, now: datetime, found: Diarization | None, error: str | None = None
) -> None:
    """Keep a mono call's speaker turns once found, or why they could not be (fenced).

    Stored at once, before the attempt completes: a later attempt (resumed, retried) reuses
    them instead of diarizing again, so the whole call has one set of labels. An ``error``
    means the call goes on without turns; the transcript is never failed for them.
    """
    _fenced_update(session, claim, speaker_turns=found.dumps() if found else None,
                             speaker_error=printable(error) if error else None, heartbeat_at=now,
                             updated_at=now)  # fmt: skip


def label_speakers(session: Session, claim: Claim, labeller: Labeller) -> list[Segment]:
    """Give the saved segments their speakers, split where the speaker changes inside one (fenced by the caller).

    The rows are rewritten in time order; each piece keeps the attempt that heard it.
    Returns the labelled segments, as ``transcripts.load_segments`` would now read them.
    """
    mine = SegmentRow.recording_id == claim.recording_id
    rows = session.scalars(select(SegmentRow).where(mine).order_by(SegmentRow.start, SegmentRow.idx)).all()
    pieces = [(piece, r.attempt_id) for r in rows for piece in labeller.pieces(segment_of(r))]
    session.execute(delete(SegmentRow).where(mine))
    if pieces:
        session.execute(insert(SegmentRow), [_segment_row(claim, i, seg, attempt) for i, (seg, attempt) in
                                             enumerate(pieces)])  # fmt: skip
    return [piece for piece, _ in pieces]


def segment_of(row: SegmentRow) -> Segment:
    """A ``segments`` row as the value the writers take."""
    words = words_from(row.words)
    return Segment(row.start, row.end, row.text, row.speaker, row.avg_logprob, row.no_speech_prob, words)


def _segment_row(claim: Claim, idx: int, seg: Segment, attempt_id: int | None) -> dict[str, object]:
    return {
        "recording_id": claim.recording_id,
        "idx": idx,
        "start": seg.start,
        "end": seg.end,
        "text": seg.text,
        "attempt_id": attempt_id,
        "speaker": seg.speaker,
        "avg_logprob": seg.avg_logprob,
        "no_speech_prob": seg.no_speech_prob,
        "words": seg.words_json(),
    }


def _fenced_update(session: Session, claim: Claim, **values: object) -> None:
    """Write the claimed row (the recording, or the piece) while this attempt still holds it, else ``LeaseLost``."""
    if claim.piece is not None:
        result = session.execute(
            update(Piece)
            .where(
                Piece.recording_id == claim.recording_id,
                Piece.idx == claim.piece,
                Piece.status == PieceStatus.PROCESSING.value,
                Piece.current_attempt_id == claim.attempt_id,
                _recording_keeps_pieces(),
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"piece {claim.piece} of recording {claim.recording_id} is no longer held by attempt "
                            f"{claim.attempt}")  # fmt: skip
        return
    result = session.execute(
        update(Recording)
        .where(
            Recording.id == claim.recording_id,
            Recording.status == RecordingStatus.PROCESSING.value,
            Recording.current_attempt_id == claim.attempt_id,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"recording {claim.recording_id} is no longer held by attempt {claim.attempt}")


# ---------------------------------------------------------------- outcomes


def complete_recording(
    session: Session,
    claim: Claim,
    *,
    now: datetime,
    segments: Sequence[Segment],
    language: str | None,
    duration_seconds: float | None,
    language_probability: float | None = None,
    coverage: Coverage | None = None,
    channels: int | None = None,
    speaker_stats: Figures | None = None,
    speaker_review: str | None = None,
    notify: bool = False,
) -> str:
    """Mark the recording completed with its transcript, quality figures and speech coverage.

    ``segments`` are the ones saved for it (``transcripts.load_segments``), read once by
    the caller, who wrote the output files from the same read. ``coverage`` is measured
    from them against the speech VAD heard over the whole call (``coverage.measure``): the
    words per minute are too, so a resumed call is measured whole, not its last attempt.
    ``speaker_stats`` are the call's speaker figures; ``speaker_review`` why its speaker
    turns need a look (``speakers.review_reason``), which flags it ``needs_review``.
    ``notify`` writes ``recording.completed`` (and ``recording.needs_review`` when flagged)
    to the webhook outbox in this transaction.
    """
    transcript = transcript_text(segments)
    measured = coverage
    figures = assess(
        [ScoredSegment(s.start, s.end, s.text, s.avg_logprob, s.no_speech_prob) for s in segments],
        speech_seconds=measured.speech_seconds if measured else None,
        language_probability=language_probability,
        gaps=measured.review_gaps() if measured else (),
    )
    covered = (claim.piece_end if claim.piece_end is not None else duration_seconds or 0.0) - claim.resume_from
    speed = (now - claim.claimed_at).total_seconds() / covered if claim.claimed_at and covered > 1.0 else None
    _fenced_update(
        session,
        claim,
        status=RecordingStatus.COMPLETED.value,
        transcript=transcript,
        language=language,
        duration_seconds=duration_seconds,
        error_message=None,
        finished_at=now,
        heartbeat_at=now,
        progress_seconds=duration_seconds,
        not_before=None,
        work_seconds_per_audio_second=speed,
        channels=channels,
        language_probability=figures.language_probability,
        speech_seconds=figures.speech_seconds,
        avg_logprob=figures.avg_logprob,
        no_speech_prob=figures.no_speech_prob,
        words_per_minute=figures.words_per_minute,
        uncovered_seconds=measured.uncovered_seconds if measured else None,
        uncovered_spans=measured.gaps_json() if measured else None,
        needs_review=figures.needs_review or bool(speaker_review),
        review_reasons="; ".join([*figures.reasons, *([speaker_review] if speaker_review else [])]) or None,
        speaker_stats=speaker_stats.dumps() if speaker_stats else None,
        updated_at=now,
    )
    end = claim.piece_end if claim.piece_end is not None else duration_seconds
    _close_attempt(session, claim.attempt_id, now=now, outcome=AttemptOutcome.SUCCEEDED, error=None, end=end)
    if claim.merge:  # merged: the pieces did their work (their attempts keep the history)
        session.execute(delete(Piece).where(Piece.recording_id == claim.recording_id))
    if notify:
        flagged = figures.needs_review or bool(speaker_review)
        outbox.emit(session, claim.recording_id, Event.COMPLETED, *([Event.NEEDS_REVIEW] if flagged else []), now=now)
    return transcript


def fail_attempt(
    session: Session, claim: Claim, *, error: BaseException, now: datetime, policy: RetryPolicy, notify: bool = False
) -> RecordingStatus:
    """Close the attempt with its own error; requeue with backoff or fail with the cause.

    ``notify``: a recording that fails for good writes ``recording.failed`` to the outbox in this transaction.
    """
    retryable = isinstance(error, RetryableError)
    cause = printable(str(error) or type(error).__name__)  # no NUL, surrogate or line break in a column
    if claim.piece is not None:
        return _fail_piece(session, claim, cause=cause, retryable=retryable, outcome=outcome_for(error), now=now,
                           policy=policy, notify=notify)  # fmt: skip
    retry_count = session.scalar(select(Recording.retry_count).where(Recording.id == claim.recording_id)) or 0
    decision = policy.decide(cause=cause, retryable=retryable, retry_count=retry_count, now=now)
    _fenced_update(session, claim, **_decision_values(decision, now))
    _close_attempt(session, claim.attempt_id, now=now, outcome=outcome_for(error), error=cause, end=None)
    if notify and decision.status is RecordingStatus.FAILED:
        outbox.emit(session, claim.recording_id, Event.FAILED, now=now)
    return decision.status


def _fail_piece(
    session: Session,
    claim: Claim,
    *,
    cause: str,
    retryable: bool,
    outcome: AttemptOutcome,
    now: datetime,
    policy: RetryPolicy,
    notify: bool,
) -> RecordingStatus:
    """A piece's attempt failed: the piece is retried under the policy on its own count; a piece that fails
    for good fails the recording with its cause. Returns the recording's status."""
    retry_count = session.scalar(
        select(Piece.retry_count).where(Piece.recording_id == claim.recording_id, Piece.idx == claim.piece)
    )
    decision = policy.decide(cause=cause, retryable=retryable, retry_count=retry_count or 0, now=now)
    _fenced_update(session, claim, **_decision_values(decision, now))
    _close_attempt(session, claim.attempt_id, now=now, outcome=outcome, error=cause, end=None)
    said = _piece_said(session, claim.recording_id, claim.piece or 0, claim.piece_start,
                       claim.piece_end or claim.piece_start, decision.error_message)  # fmt: skip
    return _piece_decided(session, claim.recording_id, said, failed=decision.status is RecordingStatus.FAILED,
                          now=now, notify=notify)  # fmt: skip


def _piece_decided(
    session: Session, recording_id: uuid.UUID, error: str, *, failed: bool, now: datetime, notify: bool
) -> RecordingStatus:
    """The recording after one of its pieces failed: still processing (the piece is retried) or failed."""
    changed = _summarise(session, recording_id, now=now, error=error, failed=failed)
    status = session.scalar(select(Recording.status).where(Recording.id == recording_id))
    if notify and failed and changed:  # one event for the call, from the piece that failed it
        outbox.emit(session, recording_id, Event.FAILED, now=now)
    return RecordingStatus(status) if status else RecordingStatus.FAILED


def release_claim(session: Session, claim: Claim, *, now: datetime, reason: str) -> None:
    """Hand a recording back to the queue without spending a retry (the worker is stopping).

    Its saved segments stay, so the next attempt resumes after them.
    """
    _fenced_update(session, claim, status=RecordingStatus.QUEUED.value, not_before=None, task_id=None, updated_at=now)
    _close_attempt(session, claim.attempt_id, now=now, outcome=AttemptOutcome.LOST, error=reason, end=None)
    if claim.piece is not None:
        _summarise(session, claim.recording_id, now=now)


def abandon_attempt(session: Session, claim: Claim, *, now: datetime) -> str:
    """Close an attempt whose recording was taken from it (skip, reset, SQL, rescue); returns why.

    Only the attempt row is written, and only while it is still ``running``: the
    recording belongs to someone else now.
    """
    row = session.execute(
        select(Recording.status, Recording.current_attempt_id).where(Recording.id == claim.recording_id)
    ).first()
    if claim.piece is not None and row is not None:
        held = session.scalar(
            select(Piece.current_attempt_id).where(Piece.recording_id == claim.recording_id, Piece.idx == claim.piece)
        )
        row = row._replace(current_attempt_id=held) if row.status != RecordingStatus.SKIPPED.value else row
    if row is None:
        reason = "Lease lost: the recording was deleted while this attempt ran"
    elif row.current_attempt_id not in (None, claim.attempt_id):
        reason = f"Lease lost: the recording was handed to another attempt (now {row.status})"
    else:
        reason = f"Lease lost: the recording was set to {row.status} while this attempt ran"
    _close_attempt(session, claim.attempt_id, now=now, outcome=AttemptOutcome.LOST, error=reason, end=None)
    return reason


def _decision_values(decision: RetryDecision, now: datetime) -> dict[str, object]:
    """The recording's columns after a failed attempt: requeued with backoff, or failed with the cause."""
    return {
        "status": decision.status.value,
        "retry_count": decision.retry_count,
        "error_message": decision.error_message,
        "not_before": decision.not_before,
        "finished_at": now if decision.status is RecordingStatus.FAILED else None,
        "task_id": None,  # the message is spent: dispatch sends a new one when it is due
        "updated_at": now,
    }


def outcome_for(error: BaseException) -> AttemptOutcome:
    if isinstance(error, AttemptTimeout):
        return AttemptOutcome.TIMEOUT
    if isinstance(error, WorkerLost):
        return AttemptOutcome.LOST
    return AttemptOutcome.FAILED


def _close_attempt(
    session: Session, attempt_id: int, *, now: datetime, outcome: AttemptOutcome, error: str | None, end: float | None
) -> None:
    values: dict[str, object] = {
        "finished_at": now,
        "outcome": outcome.value,
        "error_message": error,
        "cause": cause_of(outcome.value, error),
    }
    if end is not None:
        values["audio_end_seconds"] = end
    session.execute(
        update(Attempt)
        .where(Attempt.id == attempt_id, Attempt.outcome == AttemptOutcome.RUNNING.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


# ---------------------------------------------------------------- rescue


@dataclass(frozen=True)
class Rescued:
    recording_id: uuid.UUID
    status: RecordingStatus
    error_message: str


def last_sign_of_life() -> ColumnElement[datetime]:
    """When a ``processing`` recording last showed it is being worked on: what rescue judges it by."""
    return func.coalesce(Recording.heartbeat_at, Recording.started_at, Recording.updated_at)


def rescue_stuck(
    session: Session, *, now: datetime, stuck_timeout: float, policy: RetryPolicy, notify: bool = False
) -> list[Rescued] | None:
    """Requeue (or fail) ``processing`` recordings whose heartbeat stopped.

    Their open attempt is closed as ``lost``; with ``notify`` one that fails for good writes
    ``recording.failed`` to the outbox. Returns ``None`` when another process
    holds the rescue lock (two beats running by mistake), else what was rescued.
    """
    if not lock_rescue(session):
        return None
    cutoff = now - timedelta(seconds=stuck_timeout)
    last_sign = last_sign_of_life()
    # A split call is judged by its pieces while any is left to do; once all are done, by its merge.
    pieces_left = exists().where(Piece.recording_id == Recording.id, Piece.status != PieceStatus.COMPLETED.value)
    stuck = session.execute(
        select(Recording.id, Recording.current_attempt_id, Recording.retry_count, last_sign.label("last_sign")).where(
            Recording.status == RecordingStatus.PROCESSING.value, last_sign < cutoff, ~pieces_left
        )
    ).all()
    rescued: list[Rescued] = []
    for recording_id, attempt_id, retry_count, last_seen in stuck:
        silent = int((now - last_seen).total_seconds())
        cause = f"Worker lost: no heartbeat for {silent}s"
        decision = policy.decide(cause=cause, retryable=True, retry_count=retry_count, now=now)
        fence = (
            Recording.current_attempt_id.is_(None) if attempt_id is None else Recording.current_attempt_id == attempt_id
        )
        result = session.execute(
            update(Recording)
            .where(
                and_(Recording.id == recording_id, Recording.status == RecordingStatus.PROCESSING.value, fence),
                last_sign < cutoff,
            )
            .values(**_decision_values(decision, now))
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue  # it moved on meanwhile
        if attempt_id is not None:
            _close_attempt(session, attempt_id, now=now, outcome=AttemptOutcome.LOST, error=cause, end=None)
        if notify and decision.status is RecordingStatus.FAILED:
            outbox.emit(session, recording_id, Event.FAILED, now=now)
        log.warning("rescued recording %s: %s -> %s", recording_id, cause, decision.status.value)
        rescued.append(Rescued(recording_id, decision.status, decision.error_message))
    return rescued + _rescue_pieces(session, now=now, cutoff=cutoff, policy=policy, notify=notify)


def _rescue_pieces(
    session: Session, *, now: datetime, cutoff: datetime, policy: RetryPolicy, notify: bool
) -> list[Rescued]:
    """Pieces whose heartbeat stopped: queued again (a retry of that piece) or failed, failing their call."""
    last_sign = func.coalesce(Piece.heartbeat_at, Piece.started_at, Piece.updated_at)
    stuck = session.execute(
        select(Piece.recording_id, Piece.idx, Piece.current_attempt_id, Piece.retry_count, Piece.start_seconds,
               Piece.end_seconds, last_sign.label("last_sign"))
        .where(Piece.status == PieceStatus.PROCESSING.value, last_sign < cutoff)
    ).all()  # fmt: skip
    rescued: list[Rescued] = []
    for rid, idx, attempt_id, retry_count, start, end, last_seen in stuck:
        cause = f"Worker lost: no heartbeat for {int((now - last_seen).total_seconds())}s"
        decision = policy.decide(cause=cause, retryable=True, retry_count=retry_count, now=now)
        fence = Piece.current_attempt_id.is_(None) if attempt_id is None else Piece.current_attempt_id == attempt_id
        result = session.execute(
            update(Piece)
            .where(
                Piece.recording_id == rid,
                Piece.idx == idx,
                Piece.status == PieceStatus.PROCESSING.value,
                fence,
                last_sign < cutoff,
            )  # fmt: skip
            .values(**_decision_values(decision, now))
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue
        if attempt_id is not None:
            _close_attempt(session, attempt_id, now=now, outcome=AttemptOutcome.LOST, error=cause, end=None)
        said = _piece_said(session, rid, idx, start, end, decision.error_message)
        status = _piece_decided(session, rid, said, failed=decision.status is RecordingStatus.FAILED, now=now,
                                notify=notify)  # fmt: skip
        log.warning("rescued piece %d of recording %s: %s -> %s", idx, rid, cause, decision.status.value)
        rescued.append(Rescued(rid, status, said))
    return rescued


# ---------------------------------------------------------------- operator actions


@dataclass(frozen=True)
class Changed:
    recording_id: uuid.UUID
    file_name: str
    old_status: str
    new_status: str


def reset_recordings(
    session: Session, *, now: datetime, ids: Sequence[uuid.UUID] = (), failed: bool = False
) -> list[Changed]:
    """What operators do in SQL: back to ``queued`` with no error and ``retry_count = 0``.

    ``failed=True`` takes every failed recording; ``ids`` take those recordings in any
    status. A processing one is taken from its attempt, which is closed as ``lost``;
    its worker notices at its next heartbeat and writes nothing more. The old task id
    is cleared, so dispatch sends a fresh message at once.
    """
    condition = Recording.status == RecordingStatus.FAILED.value if failed else Recording.id.in_(list(ids))
    return _set_status(
        session,
        condition,
        RecordingStatus.QUEUED,
        now,
        reason="Reset by an operator while this attempt ran",
        error_message=None,
        retry_count=0,
        not_before=None,
        task_id=None,
    )


def skip_recordings(session: Session, *, now: datetime, ids: Sequence[uuid.UUID]) -> list[Changed]:
    """Take recordings out for good (``skipped``); a running attempt is closed and its writes fenced off."""
    return _set_status(
        session,
        Recording.id.in_(list(ids)) & (Recording.status != RecordingStatus.SKIPPED.value),
        RecordingStatus.SKIPPED,
        now,
        reason="Skipped by an operator while this attempt ran",
    )


def _set_status(
    session: Session, condition: object, status: RecordingStatus, now: datetime, *, reason: str, **values: object
) -> list[Changed]:
    rows = session.execute(
        select(Recording.id, Recording.file_name, Recording.status, Recording.current_attempt_id)
        .where(condition)  # type: ignore[arg-type]
        .with_for_update()
    ).all()
    if not rows:
        return []
    session.execute(
        update(Recording)
        .where(Recording.id.in_([r.id for r in rows]), condition)  # type: ignore[arg-type]
        .values(status=status.value, updated_at=now, current_attempt_id=None, **values)
        .execution_options(synchronize_session=False)
    )
    for r in rows:
        if r.status == RecordingStatus.PROCESSING.value and r.current_attempt_id is not None:
            _close_attempt(session, r.current_attempt_id, now=now, outcome=AttemptOutcome.LOST, error=reason, end=None)
    return [Changed(r.id, r.file_name, r.status, status.value) for r in rows]


# ---------------------------------------------------------------- bookkeeping


def record_service_run(session: Session, *, name: str, now: datetime, detail: str) -> None:
    """Note that a periodic job ran (``doctor`` checks that beat is alive)."""
    updated = session.execute(update(ServiceRun).where(ServiceRun.name == name).values(last_run_at=now, detail=detail))
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.add(ServiceRun(name=name, last_run_at=now, detail=detail))
