"""Read-only views of the database for operators, and their 80-column renderings."""

from __future__ import annotations

import json
import re
import textwrap
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from transcriber import callfacts
from transcriber.coverage import clock
from transcriber.errors import TranscriberError
from transcriber.speakers import Figures
from transcriber.tables import Attempt, AttemptOutcome, Piece, Recording, RecordingStatus

WIDTH = 80


def summary(session: Session, *, now: datetime) -> dict[str, Any]:
    """Recordings by status, what runs now, and runs that did not succeed.

    Flower counts runs (attempts); this shows both, so "23 failed runs for
    4 failed recordings" reads at a glance.
    """
    by_status = dict(session.execute(select(Recording.status, func.count()).group_by(Recording.status)).all())
    by_outcome = dict(session.execute(select(Attempt.outcome, func.count()).group_by(Attempt.outcome)).all())
    processing = session.execute(
        select(
            Recording.id,
            Recording.file_name,
            Recording.worker,
            Recording.started_at,
            Recording.heartbeat_at,
            Recording.progress_seconds,
            Recording.duration_seconds,
            Attempt.audio_start_seconds,
        )
        .outerjoin(Attempt, Attempt.id == Recording.current_attempt_id)
        .where(Recording.status == RecordingStatus.PROCESSING.value)
        .order_by(Recording.started_at)
    ).all()
    review = session.execute(
        select(Recording.id, Recording.file_name, Recording.review_reasons)
        .where(Recording.needs_review.is_(True), Recording.status == RecordingStatus.COMPLETED.value)
        .order_by(Recording.finished_at.desc())
        .limit(5)
    ).all()
    review_count = session.scalar(select(func.count()).where(Recording.needs_review.is_(True))) or 0
    return {
        "needs_review": {
            "count": int(review_count),
            "latest": [{"id": str(r.id), "file_name": r.file_name, "reasons": r.review_reasons} for r in review],
        },
        "recordings": {status.value: int(by_status.get(status.value, 0)) for status in RecordingStatus},
        "attempts": {outcome.value: int(by_outcome.get(outcome.value, 0)) for outcome in AttemptOutcome},
        "processing": [
            {
                "id": str(r.id),
                "file_name": r.file_name,
                "worker": r.worker,
                "started_at": r.started_at,
                "heartbeat_age_seconds": round((now - r.heartbeat_at).total_seconds(), 1) if r.heartbeat_at else None,
                "done_seconds": r.progress_seconds,
                "duration_seconds": r.duration_seconds,
                "percent": _percent(r.progress_seconds, r.duration_seconds),
                "estimated_finish": estimate_finish(
                    now=now,
                    started_at=r.started_at,
                    audio_start=r.audio_start_seconds or 0.0,
                    done=r.progress_seconds,
                    duration=r.duration_seconds,
                ),  # fmt: skip
            }
            for r in processing
        ],
    }


def format_summary(data: dict[str, Any]) -> str:
    recs, runs = data["recordings"], data["attempts"]
    lines = [
        "recordings  " + "  ".join(f"{k} {v}" for k, v in recs.items()),
        "runs        " + "  ".join(f"{k} {v}" for k, v in runs.items() if v or k == "succeeded"),
    ]
    not_ok = sum(v for k, v in runs.items() if k not in ("succeeded", "running"))
    if not_ok:
        lines.append(f"            {not_ok} run(s) did not succeed, for {recs['failed']} failed recording(s)")
    review = data.get("needs_review") or {}
    if review.get("count"):
        lines += ["", f"needs review {review['count']} (all: transcriber status --needs-review)"]
        for r in review["latest"]:
            lines += _with_name(f"{r['id'][:8]:<10}", r["file_name"])
            lines += _wrap(r["reasons"] or "")
    if data["processing"]:
        lines += ["", f"{'processing':<8}  {'worker':<16}  {'done':>5}  {'finish':>8}  {'beat':>6}  file"]
        for r in data["processing"]:
            done = f"{r['percent']:.0f}%" if r["percent"] is not None else _secs(r["done_seconds"])
            finish = r["estimated_finish"].strftime("%H:%M:%S") if r["estimated_finish"] else "-"
            beat = _secs(r["heartbeat_age_seconds"])
            row = f"{r['id'][:8]:<10}{_clip(r['worker'] or '', 16):<16}  {done:>5}  {finish:>8}  {beat:>6}  "
            lines += _with_name(row, r["file_name"])
    return "\n".join(lines)


def failed_list(session: Session, *, limit: int = 200, call: CallFilter | None = None) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            Recording.id,
            Recording.file_name,
            Recording.duration_seconds,
            Recording.retry_count,
            Recording.error_message,
            Recording.updated_at,
            *_CALL_COLUMNS,
        )
        .where(Recording.status == RecordingStatus.FAILED.value, *(call.conditions() if call else ()))
        .order_by(Recording.updated_at.desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": str(r.id),
            "file_name": r.file_name,
            "duration_minutes": round(r.duration_seconds / 60, 1) if r.duration_seconds else None,
            "retry_count": r.retry_count,
            "error_message": r.error_message,
            "updated_at": r.updated_at,
            **call_facts_of(r),
        }
        for r in rows
    ]


def format_failed(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no failed recordings"
    lines = []
    for r in rows:  # the id and the whole name, then the figures, then the cause in full
        minutes = f"{r['duration_minutes']:.1f} min" if r["duration_minutes"] is not None else "- min"
        updated = r["updated_at"].strftime("%Y-%m-%d %H:%M UTC") if r["updated_at"] else "-"
        lines += _with_name(f"{r['id'][:8]}  ", r["file_name"])
        lines.append(f"{'':10}{minutes}   retries {r['retry_count']}   updated {updated}")
        lines += _call_lines(r, " " * 10 + "call ")
        lines += _wrap(r["error_message"] or "")
    return "\n".join(lines)


def list_recordings(
    session: Session,
    *,
    statuses: Sequence[str] = (),
    name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
    call: CallFilter | None = None,
) -> list[dict[str, Any]]:
    """Recordings of any status, newest registered first: by status, a piece of the file name, when registered,
    and the call's facts (``call``)."""
    query = select(Recording).where(*(call.conditions() if call else ()))
    if statuses:
        query = query.where(Recording.status.in_(list(statuses)))
    if name:
        query = query.where(_name_contains(name))
    if since is not None:
        query = query.where(Recording.created_at >= since)
    if until is not None:
        query = query.where(Recording.created_at < until)
    rows = session.scalars(query.order_by(Recording.created_at.desc(), Recording.id).limit(limit)).all()
    return [
        {
            "id": str(r.id),
            "status": r.status,
            "file_name": r.file_name,
            "file_path": r.file_path,
            "duration_seconds": r.duration_seconds,
            "retry_count": r.retry_count,
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "needs_review": r.needs_review,
            "error_message": r.error_message,
            **call_facts_of(r),
        }
        for r in rows
    ]


def format_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no recordings match"
    lines = [f"{'id':<8}  {'status':<10}  {'length':>7}  {'registered':<16}  file"]
    for r in rows:
        when = r["created_at"].strftime("%Y-%m-%d %H:%M") if r["created_at"] else ""
        row = f"{r['id'][:8]}  {r['status']:<10}  {_secs(r['duration_seconds']):>7}  {when:<16}  "
        lines += _with_name(row, r["file_name"])
        lines += _call_lines(r, " " * 10 + "call ")
    return "\n".join(lines)


# ---------------------------------------------------------------- the call's facts (callfacts.py)

_CALL_COLUMNS = (Recording.phone_number, Recording.call_started_at, Recording.contact, Recording.direction)


def call_facts_of(r: Any) -> dict[str, Any]:
    """The call's facts of a row, for the views and their JSON (the start as ISO 8601, UTC)."""
    started = r.call_started_at
    return {
        "phone_number": r.phone_number,
        "call_started_at": started.astimezone(UTC).isoformat() if started else None,
        "contact": r.contact,
        "direction": r.direction,
    }


def format_call(data: dict[str, Any]) -> str:
    """``+18134353769, 2020-03-01 17:11:19 UTC, incoming, contact Müller``: the parts that are known."""
    started = data.get("call_started_at")
    parts = [
        data.get("phone_number"),
        datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M:%S UTC") if started else None,
        data.get("direction"),
        f"contact {data['contact']}" if data.get("contact") else None,
    ]
    return ", ".join(part for part in parts if part)


def _call_lines(data: dict[str, Any], first: str) -> list[str]:
    said = format_call(data)
    return textwrap.wrap(said, WIDTH, initial_indent=first, subsequent_indent=" " * 10) if said else []


@dataclass(frozen=True)
class CallFilter:
    """``--phone``, ``--contact``, ``--called-since``, ``--called-until`` of ``list`` and ``failed``.

    A number matches as ``callfacts`` stores it (E.164 with ``PHONE_REGION``), or by the digits it ends with, so
    ``8134353769``, ``+1 813 435 3769`` and ``+18134353769`` all find ``+18134353769``.
    """

    phone: str | None = None
    contact: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    region: str = ""

    def __post_init__(self) -> None:
        if self.phone is not None and callfacts.normalise_phone(self.phone, self.region) is None:
            raise TranscriberError(f"--phone {self.phone!r}: expected a phone number (at least 3 digits)")
        if self.contact is not None and not self.contact.strip():
            raise TranscriberError("--contact '': expected a piece of the contact's name")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise TranscriberError("--called-until is not after --called-since: no call can match")

    def conditions(self) -> list[Any]:
        where: list[Any] = []
        if self.phone is not None:
            exact = callfacts.normalise_phone(self.phone, self.region)
            tail = callfacts.national_digits(self.phone)
            where.append(
                or_(Recording.phone_number == exact, Recording.phone_number.endswith(tail, autoescape=True))
                if tail
                else Recording.phone_number == exact
            )
        if self.contact is not None:
            where.append(func.lower(Recording.contact).contains(self.contact.strip().lower(), autoescape=True))
        if self.since is not None:
            where.append(Recording.call_started_at >= self.since)
        if self.until is not None:
            where.append(Recording.call_started_at < self.until)
        return where


def parse_when(text: str, *, option: str, end_of_day: bool = False) -> datetime:
    """``--since`` / ``--until``: an ISO date or date and time; without an offset it is UTC, as printed.

    A bare date given to ``--until`` means the end of that day (``--until 2026-03-01`` includes March 1).
    """
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TranscriberError(
            f"{option} {text!r}: expected a date (2026-03-01) or a date and time (2026-03-01 17:11, UTC)"
        ) from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    date_only = len(text.strip()) == len("2026-03-01")
    return parsed + timedelta(days=1) if end_of_day and date_only else parsed


def _wrap(text: str, indent: int = 10) -> list[str]:
    """The cause in full, on its own indented lines (80 columns)."""
    return textwrap.wrap(" ".join(text.split()), WIDTH, initial_indent=" " * indent, subsequent_indent=" " * indent)


def _with_name(row: str, name: str, indent: int = 10) -> list[str]:
    """``row`` ending in the full file name, or, when that passes 80 columns, the name on lines of its own.

    Never clipped: the date and time at the end of a call recorder's names are what tells calls apart.
    """
    if len(row) + len(name) <= WIDTH:
        return [row + name]
    lines = _hard_wrap(name, indent)
    if len(row) == indent:  # the row is just the id: the name starts beside it
        return [row + lines[0][indent:], *lines[1:]]
    return [row.rstrip(), *lines]


def _hard_wrap(text: str, indent: int) -> list[str]:
    """``text`` cut every 80 - ``indent`` characters, every character kept (spaces too: it is a name)."""
    width = WIDTH - indent
    return [" " * indent + text[i : i + width] for i in range(0, max(len(text), 1), width)]


_ID_PREFIX = re.compile(r"^[0-9a-fA-F-]+$")


def find_recording(session: Session, ref: str) -> Recording:
    """A recording by id, a unique first part of its id, its file name or path, or a unique piece of its name.

    Ids win: a reference that looks like the start of an id and matches one is that recording.
    """
    try:
        found = session.get(Recording, uuid.UUID(ref))
        if found is not None:
            return found
    except ValueError:
        pass
    if _ID_PREFIX.match(ref):
        prefix = ref.lower().replace("-", "")
        by_id = session.scalars(
            select(Recording).where(func.replace(cast(Recording.id, String), "-", "").like(f"{prefix}%")).limit(2)
        ).all()
        if len(by_id) > 1:
            raise TranscriberError(f"more than one recording matches {ref!r}: give more of its id")
        if by_id:
            return by_id[0]
    for where, what in (
        (Recording.file_name == ref, "are named"),
        (Recording.file_path == ref, "have the path"),
        (_name_contains(ref), "have names containing"),
    ):
        found_all = session.scalars(select(Recording).where(where).order_by(Recording.created_at).limit(6)).all()
        if len(found_all) == 1:
            return found_all[0]
        if found_all:
            ids = ", ".join(str(r.id)[:8] for r in found_all[:5])
            more = "" if len(found_all) <= 5 else ", ..."
            raise TranscriberError(f"several recordings {what} {ref!r} ({ids}{more}): give its id")
    raise TranscriberError(
        f"no recording matches {ref!r}: give its id (or its first characters) or its file name (see 'transcriber list')"
    )


def _name_contains(piece: str) -> Any:
    """Case-insensitive ``piece`` in the file name; ``%`` and ``_`` (common in call names) taken literally."""
    return func.lower(Recording.file_name).contains(piece.lower(), autoescape=True)


def attempts_of(session: Session, ref: str, *, now: datetime | None = None) -> dict[str, Any]:
    rec = find_recording(session, ref)
    rows = session.scalars(select(Attempt).where(Attempt.recording_id == rec.id).order_by(Attempt.attempt)).all()
    running = [a for a in rows if a.id == rec.current_attempt_id and rec.status == RecordingStatus.PROCESSING.value]
    finish = None
    if running and now is not None:
        finish = estimate_finish(
            now=now, started_at=running[0].started_at, audio_start=running[0].audio_start_seconds or 0.0,
            done=rec.progress_seconds, duration=rec.duration_seconds,
        )  # fmt: skip
    return {
        "id": str(rec.id),
        "file_name": rec.file_name,
        "file_path": rec.file_path,
        "status": rec.status,
        "retry_count": rec.retry_count,
        "error_message": rec.error_message,
        "duration_seconds": rec.duration_seconds,
        "progress_seconds": rec.progress_seconds,
        "percent": _percent(rec.progress_seconds, rec.duration_seconds),
        "estimated_finish": finish,
        "language": rec.language,
        "quality": {
            "channels": rec.channels,
            "language_probability": rec.language_probability,
            "speech_seconds": rec.speech_seconds,
            "avg_logprob": rec.avg_logprob,
            "no_speech_prob": rec.no_speech_prob,
            "words_per_minute": rec.words_per_minute,
            "uncovered_seconds": rec.uncovered_seconds,
            "uncovered": json.loads(rec.uncovered_spans) if rec.uncovered_spans else [],
            "needs_review": rec.needs_review,
            "review_reasons": rec.review_reasons,
        },
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "heartbeat_at": rec.heartbeat_at,
        "worker": rec.worker,
        **call_facts_of(rec),
        "speakers": json.loads(rec.speaker_stats) if rec.speaker_stats else None,
        "speaker_error": rec.speaker_error,
        "attempts": [
            {
                "attempt": a.attempt,
                "outcome": a.outcome,
                "task_id": a.task_id,
                "worker": a.worker,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "time_limit_seconds": a.time_limit_seconds,
                "audio_start_seconds": a.audio_start_seconds,
                "audio_end_seconds": a.audio_end_seconds,
                "error_message": a.error_message,
                "piece": a.piece,
            }
            for a in rows
        ],
        "pieces": [
            {
                "piece": p.idx,
                "start_seconds": p.start_seconds,
                "end_seconds": p.end_seconds,
                "status": p.status,
                "retry_count": p.retry_count,
                "error_message": p.error_message,
                "worker": p.worker,
                "progress_seconds": p.progress_seconds,
            }
            for p in session.scalars(select(Piece).where(Piece.recording_id == rec.id).order_by(Piece.idx))
        ],
    }


def format_detail(data: dict[str, Any]) -> str:
    done = f"{data['percent']:.0f}%" if data["percent"] is not None else _secs(data["progress_seconds"])
    lines = [
        f"{data['id']}  {data['status']}",
        *_with_name("file      ", data["file_path"]),
        *_call_lines(data, "call      "),
        f"duration  {_secs(data['duration_seconds'])}   done {done}   retries {data['retry_count']}"
        f"   language {data['language'] or '-'}",
    ]
    q = data.get("quality") or {}
    if q.get("speech_seconds") is not None or q.get("avg_logprob") is not None:
        lines.append(
            f"quality   speech {_secs(q['speech_seconds'])} of {_secs(data['duration_seconds'])}"
            f"   lang p {_num(q['language_probability'])}   logprob {_num(q['avg_logprob'])}"
            f"   no-speech {_num(q['no_speech_prob'])}   wpm {_num(q['words_per_minute'], 0)}"
        )
    if q.get("uncovered_seconds") is not None:
        spans = ", ".join(f"{clock(g['start'])}-{clock(g['end'])}" for g in q.get("uncovered") or [])
        said = f"speech without text {_secs(q['uncovered_seconds'])}" + (f" at {spans}" if spans else "")
        lines += textwrap.wrap(said, WIDTH, initial_indent="coverage  ", subsequent_indent=" " * 10)
    if data.get("speakers"):
        figures = Figures.loads(json.dumps(data["speakers"]))
        assert figures is not None
        lines += [f"{'speakers' if i == 0 else '':10s}{line}" for i, line in enumerate(figures.describe())]
    elif data.get("speaker_error"):
        lines += ["speakers  none"] + _wrap(data["speaker_error"])
    if q.get("needs_review"):
        lines += ["review"] + _wrap(q.get("review_reasons") or "")
    if data.get("estimated_finish"):
        lines.append(f"finish    about {data['estimated_finish'].strftime('%Y-%m-%d %H:%M:%S')} UTC")
    if data["error_message"]:
        lines += ["error"] + _wrap(data["error_message"])
    if data.get("pieces"):
        lines.append(f"pieces    {pieces_line(data['pieces'])}")
    lines.append(format_attempts(data))
    return "\n".join(lines)


def pieces_line(pieces: list[dict[str, Any]]) -> str:
    """A split call's pieces at a glance: ``5 pieces: 3 completed, 1 processing, 1 queued``."""
    counts: dict[str, int] = {}
    for p in pieces:
        counts[p["status"]] = counts.get(p["status"], 0) + 1
    order = ["completed", "processing", "queued", "failed"]
    return f"{len(pieces)} pieces: " + ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


def format_attempts(data: dict[str, Any]) -> str:
    if not data["attempts"]:
        return "no runs yet"
    split = any(a.get("piece") is not None for a in data["attempts"])
    head = f"{'#':>3}  " + ("piece  " if split else "")
    lines = [f"{head}{'outcome':<9}  {'started':<11}  {'audio done':<17}  {'limit':>7}  worker"]
    for a in data["attempts"]:
        started = a["started_at"].strftime("%m-%d %H:%M") if a["started_at"] else ""
        span = f"{_secs(a['audio_start_seconds'])} -> {_secs(a['audio_end_seconds'])}"
        limit = _secs(a["time_limit_seconds"]) if a["time_limit_seconds"] else "none"
        worker = _clip(a["worker"] or "", WIDTH - 57 - (7 if split else 0))
        piece = ("merge" if a.get("piece") is None else f"{a['piece'] + 1}").ljust(7) if split else ""
        lines.append(f"{a['attempt']:>3}  {piece}{a['outcome']:<9}  {started:<11}  {span:<17}  {limit:>7}  {worker}")
        lines += _wrap(a["error_message"] or "", indent=5)
    return "\n".join(lines)


def estimate_finish(
    *, now: datetime, started_at: datetime | None, audio_start: float, done: float | None, duration: float | None
) -> datetime | None:
    """When the running attempt should finish, at the speed it has shown so far."""
    if started_at is None or done is None or not duration:
        return None
    elapsed = (now - started_at).total_seconds()
    covered = done - audio_start
    if elapsed <= 0 or covered <= 0:
        return None
    return now + timedelta(seconds=max(duration - done, 0.0) * elapsed / covered)


def needs_review_list(session: Session, *, limit: int = 200) -> list[dict[str, Any]]:
    """Completed transcripts whose quality figures fall outside the bounds in quality.py."""
    rows = session.execute(
        select(Recording.id, Recording.file_name, Recording.duration_seconds, Recording.review_reasons)
        .where(Recording.needs_review.is_(True))
        .order_by(Recording.finished_at.desc())
        .limit(limit)
    ).all()
    return [
        {"id": str(r.id), "file_name": r.file_name, "duration_seconds": r.duration_seconds, "reasons": r.review_reasons}
        for r in rows
    ]


def format_needs_review(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no transcripts need review"
    lines = []
    for r in rows:
        lines += _with_name(f"{r['id'][:8]}  {_secs(r['duration_seconds']):>7}  ", r["file_name"])
        lines += _wrap(r["reasons"] or "")
    return "\n".join(lines)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(done: float | None, total: float | None) -> float | None:
    if done is None or not total:
        return None
    return round(min(100.0, 100.0 * done / total), 1)


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value >= 3600:
        return f"{int(value // 3600)}h{int(value % 3600 // 60):02d}m"
    if value >= 60:
        return f"{int(value // 60)}m{int(value % 60):02d}s"
    return f"{value:.0f}s"


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
