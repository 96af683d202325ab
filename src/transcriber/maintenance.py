"""The periodic jobs beat runs: rescue stuck work, dispatch queued recordings.

Both act at most once per interval however many beat processes run by mistake:
an advisory lock keeps them from overlapping and ``service_runs`` from repeating.
Each beat also notes its own tick there (a row ``beat HOST PID``), so ``doctor`` can
say that two run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle
from transcriber.db import transaction
from transcriber.tables import ServiceRun

log = logging.getLogger(__name__)


class SendTask(Protocol):
    """Sends one transcription message: recording id, task id, file name, and the piece of a split call."""

    def __call__(self, recording_id: uuid.UUID, task_id: str, file_name: str, piece: int | None = None) -> None: ...


BEAT_ROW = "beat "  # the prefix of the beats' own rows in service_runs
BEAT_ROWS_KEPT = timedelta(days=1)  # a beat that stopped without removing its row (killed, or its machine died)


@dataclass(frozen=True)
class BeatTick:
    """The last tick of one beat process."""

    host: str
    pid: int
    at: datetime


def beat_row_name(host: str, pid: int) -> str:
    """``beat HOST PID``, the host cut to fit ``service_runs.name`` (64 characters)."""
    tail = f" {pid}"
    return f"{BEAT_ROW}{host}"[: 64 - len(tail)] + tail


def record_beat_tick(sessions: sessionmaker[Session], *, host: str, pid: int, now: datetime) -> None:
    """Note that this beat ticked (every tick, also one whose jobs another beat had just run); forget beats
    that have not ticked for a day."""
    with transaction(sessions) as session:
        lifecycle.record_service_run(session, name=beat_row_name(host, pid), now=now, detail=f"pid {pid} on {host}")
        session.execute(
            delete(ServiceRun).where(
                ServiceRun.name.startswith(BEAT_ROW), ServiceRun.last_run_at < now - BEAT_ROWS_KEPT
            )
        )


def forget_beat(sessions: sessionmaker[Session], *, host: str, pid: int) -> None:
    """A beat that stops cleanly removes its row: a restarted beat is not taken for a second one."""
    with transaction(sessions) as session:
        session.execute(delete(ServiceRun).where(ServiceRun.name == beat_row_name(host, pid)))


def live_beats(session: Session, *, now: datetime, within: float) -> list[BeatTick]:
    """The beats that ticked in the last ``within`` seconds, most recent first."""
    rows = session.execute(
        select(ServiceRun.name, ServiceRun.detail, ServiceRun.last_run_at)
        .where(ServiceRun.name.startswith(BEAT_ROW), ServiceRun.last_run_at >= now - timedelta(seconds=within))
        .order_by(ServiceRun.last_run_at.desc())
    ).all()
    beats = []
    for name, detail, at in rows:
        pid = name.rsplit(" ", 1)[-1]
        host = (detail or "").partition(" on ")[2] or name[len(BEAT_ROW) : -len(pid) - 1]  # the detail has it whole
        beats.append(BeatTick(host=host, pid=int(pid) if pid.isdigit() else 0, at=at))
    return beats


def _ran_recently(session: Session, name: str, now: datetime, interval: float) -> bool:
    last = session.scalar(select(ServiceRun.last_run_at).where(ServiceRun.name == name))
    # Half an interval: a second beat's tick is skipped, a late tick of the only beat is not.
    return last is not None and now - last < timedelta(seconds=interval / 2)


def cleanup_stuck(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    stuck_timeout: float,
    policy: lifecycle.RetryPolicy,
    interval: float,
    notify: bool = False,
) -> list[lifecycle.Rescued] | None:
    """Rescue recordings whose worker stopped heartbeating; ``None`` if skipped (``notify``: webhook events)."""
    with transaction(sessions) as session:
        if not lifecycle.lock_rescue(session) or _ran_recently(session, "cleanup_stuck", now, interval):
            return None
        rescued = (
            lifecycle.rescue_stuck(session, now=now, stuck_timeout=stuck_timeout, policy=policy, notify=notify) or []
        )
        lifecycle.record_service_run(session, name="cleanup_stuck", now=now, detail=f"rescued {len(rescued)}")
    return rescued


def dispatch_queued(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    live_task_ids: Collection[str] | None,
    send: SendTask,
    interval: float | None = None,
    limit: int = 1000,
    send_grace: float = 0.0,
) -> int | None:
    """Send a message for every due queued recording without a live one.

    Each recording's new task id is committed before its message is sent. Returns
    how many were sent, or ``None`` when another dispatcher ran this interval.
    ``send_grace``: see ``lifecycle.find_dispatchable``.
    """
    with transaction(sessions) as session:
        if not lifecycle.lock_dispatch(session):
            return None
        if interval is not None and _ran_recently(session, "dispatch_queued", now, interval):
            return None
        candidates = lifecycle.find_dispatchable(
            session, now=now, live_task_ids=live_task_ids, limit=limit, send_grace=send_grace
        )
        pieces = lifecycle.find_dispatchable_pieces(
            session, now=now, live_task_ids=live_task_ids, limit=limit, send_grace=send_grace
        )
        detail = f"due {len(candidates)}" + (f", pieces {len(pieces)}" if pieces else "")
        lifecycle.record_service_run(session, name="dispatch_queued", now=now, detail=detail)
    sent = 0
    for recording_id, previous, file_name in candidates:
        if dispatch_one(sessions, recording_id, file_name, previous_task_id=previous, send=send, now=now):
            sent += 1
    for recording_id, piece, previous, file_name in pieces:
        if dispatch_one(sessions, recording_id, file_name, previous_task_id=previous, send=send, now=now, piece=piece):
            sent += 1
    if sent:
        log.info("dispatched %d queued recording(s) and piece(s)", sent)
    return sent


def dispatch_pieces(sessions: sessionmaker[Session], recording_id: uuid.UUID, *, send: SendTask, now: datetime) -> int:
    """Send the pieces of one call that never had a message (just cut): at once, not at beat's next tick."""
    with transaction(sessions) as session:
        due = [p for p in lifecycle.find_dispatchable_pieces(session, now=now, live_task_ids=None)
               if p[0] == recording_id and p[2] is None]  # fmt: skip
    return sum(
        dispatch_one(sessions, rid, name, previous_task_id=None, send=send, now=now, piece=piece)
        for rid, piece, _, name in due
    )


def dispatch_one(
    sessions: sessionmaker[Session],
    recording_id: uuid.UUID,
    file_name: str,
    *,
    previous_task_id: str | None,
    send: SendTask,
    now: datetime,
    piece: int | None = None,
) -> bool:
    """Commit a fresh task id for one queued recording (or piece), then send its message."""
    task_id = str(uuid.uuid4())
    with transaction(sessions) as session:
        if piece is None:
            marked = lifecycle.mark_dispatched(
                session, recording_id=recording_id, previous_task_id=previous_task_id, task_id=task_id, now=now
            )
        else:
            marked = lifecycle.mark_piece_dispatched(
                session,
                recording_id=recording_id,
                piece=piece,
                previous_task_id=previous_task_id,
                task_id=task_id,
                now=now,
            )
        if not marked:
            return False
    if piece is None:
        send(recording_id, task_id, file_name)
    else:
        send(recording_id, task_id, file_name, piece)
    return True
