"""The recording state machine against real databases (Postgres and SQLite)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle
from transcriber.db import transaction
from transcriber.errors import AttemptTimeout, LeaseLost, PermanentError, WorkerLost
from transcriber.segments import Segment
from transcriber.tables import Attempt, Recording
from transcriber.tables import Segment as SegmentRow
from transcriber.transcripts import load_segments

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = lifecycle.RetryPolicy(max_retries=3, backoff_base=10, backoff_cap=600)


def register(sessions: sessionmaker[Session], name: str = "call.m4a", digest: str | None = None) -> uuid.UUID:
    with transaction(sessions) as s:
        rec, created = lifecycle.register_recording(
            s,
            file_path=f"/in/{name}",
            file_name=name,
            file_size=10,
            content_sha256=digest or uuid.uuid4().hex * 2,
            now=T0,
        )
        assert created
        return rec.id


def claim(sessions: sessionmaker[Session], rid: uuid.UUID, now: datetime = T0, task: str = "t1") -> lifecycle.Claim:
    with transaction(sessions) as s:
        c = lifecycle.claim_recording(s, recording_id=rid, task_id=task, worker="w1", now=now)
    assert c is not None
    return c


def get(sessions: sessionmaker[Session], rid: uuid.UUID) -> Recording:
    with sessions() as s:
        rec = s.get(Recording, rid)
        assert rec is not None
        return rec


def attempts(sessions: sessionmaker[Session], rid: uuid.UUID) -> list[Attempt]:
    with sessions() as s:
        return list(s.scalars(select(Attempt).where(Attempt.recording_id == rid).order_by(Attempt.attempt)))


def test_same_audio_twice_is_one_recording(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions, digest="a" * 64)
    with transaction(sessions) as s:
        again, created = lifecycle.register_recording(
            s, file_path="/in/copy.m4a", file_name="copy.m4a", file_size=10, content_sha256="a" * 64, now=T0
        )
    assert not created and again.id == rid


def test_claim_is_compare_and_set(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    first = claim(sessions, rid)
    with transaction(sessions) as s:
        second = lifecycle.claim_recording(s, recording_id=rid, task_id="t2", worker="w2", now=T0)
    assert second is None  # a redelivered message is a no-op
    rec = get(sessions, rid)
    assert (rec.status, rec.worker, rec.task_id, rec.current_attempt_id) == ("processing", "w1", "t1", first.attempt_id)
    assert [(a.attempt, a.outcome) for a in attempts(sessions, rid)] == [(1, "running")]


def test_success_stores_transcript_and_closes_attempt(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    c = claim(sessions, rid)
    segs = [Segment(0.0, 2.0, " Hello there."), Segment(2.0, 4.5, " Goodbye.")]
    with transaction(sessions) as s:
        lifecycle.save_progress(s, c, now=T0, first_idx=0, segments=segs, progress_seconds=4.5)
        lifecycle.complete_recording(
            s,
            c,
            segments=load_segments(s, c.recording_id),
            now=T0 + timedelta(seconds=5),
            language="en",
            duration_seconds=4.5,
        )
    rec = get(sessions, rid)
    assert (rec.status, rec.transcript, rec.language, rec.duration_seconds) == (
        "completed",
        "Hello there. Goodbye.",
        "en",
        4.5,
    )
    [a] = attempts(sessions, rid)
    assert (a.outcome, a.audio_end_seconds, a.finished_at) == ("succeeded", 4.5, T0 + timedelta(seconds=5))


def test_timeouts_retry_then_fail_with_the_root_cause(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    now = T0
    for expected_retry in (1, 2, 3):
        c = claim(sessions, rid, now=now)
        with transaction(sessions) as s:
            status = lifecycle.fail_attempt(s, c, error=AttemptTimeout(1800), now=now, policy=POLICY)
        rec = get(sessions, rid)
        assert (status.value, rec.status, rec.retry_count) == ("queued", "queued", expected_retry)
        assert rec.error_message == "Timeout exceeded: TimeLimitExceeded(1800)"
        assert rec.not_before is not None and rec.not_before > now
        with transaction(sessions) as s:  # not due yet: a message that arrives early is a no-op
            assert lifecycle.claim_recording(s, recording_id=rid, task_id="x", worker="w", now=now) is None
        now = rec.not_before
    c = claim(sessions, rid, now=now)
    with transaction(sessions) as s:
        lifecycle.fail_attempt(s, c, error=AttemptTimeout(1800), now=now, policy=POLICY)
    rec = get(sessions, rid)
    assert (rec.status, rec.retry_count) == ("failed", 3)
    assert rec.error_message == "Max retries exceeded (3): Timeout exceeded: TimeLimitExceeded(1800)"
    rows = attempts(sessions, rid)
    assert [(a.attempt, a.outcome) for a in rows] == [(n, "timeout") for n in (1, 2, 3, 4)]
    assert {a.error_message for a in rows} == {"Timeout exceeded: TimeLimitExceeded(1800)"}


def test_permanent_error_fails_at_once(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    c = claim(sessions, rid)
    with transaction(sessions) as s:
        lifecycle.fail_attempt(s, c, error=PermanentError("Unreadable audio: bad header"), now=T0, policy=POLICY)
    rec = get(sessions, rid)
    assert (rec.status, rec.retry_count, rec.error_message) == ("failed", 0, "Unreadable audio: bad header")
    assert [a.outcome for a in attempts(sessions, rid)] == ["failed"]


def test_rescue_requeues_silent_work_and_fences_the_old_attempt(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    old = claim(sessions, rid, now=T0)
    later = T0 + timedelta(seconds=400)
    with transaction(sessions) as s:
        rescued = lifecycle.rescue_stuck(s, now=later, stuck_timeout=300, policy=POLICY)
    assert rescued is not None and [r.recording_id for r in rescued] == [rid]
    rec = get(sessions, rid)
    assert (rec.status, rec.retry_count, rec.error_message) == ("queued", 1, "Worker lost: no heartbeat for 400s")
    assert [(a.outcome, a.error_message) for a in attempts(sessions, rid)] == [
        ("lost", "Worker lost: no heartbeat for 400s")
    ]
    # The old worker wakes up: none of its writes land.
    with pytest.raises(LeaseLost), transaction(sessions) as s:
        lifecycle.save_progress(s, old, now=later, first_idx=0, segments=[], progress_seconds=1.0)
    with pytest.raises(LeaseLost), transaction(sessions) as s:
        lifecycle.complete_recording(
            s, old, segments=load_segments(s, old.recording_id), now=later, language="en", duration_seconds=1.0
        )
    assert get(sessions, rid).status == "queued"


def test_rescue_spares_live_heartbeats_and_fails_when_retries_are_spent(sessions: sessionmaker[Session]) -> None:
    live, dead = register(sessions, "live.m4a"), register(sessions, "dead.m4a")
    claim(sessions, live, now=T0 + timedelta(seconds=200))
    claim(sessions, dead, now=T0)
    with sessions.begin() as s:
        s.execute(text("UPDATE recordings SET retry_count = 3 WHERE file_name = 'dead.m4a'"))
    with transaction(sessions) as s:
        lifecycle.rescue_stuck(s, now=T0 + timedelta(seconds=400), stuck_timeout=300, policy=POLICY)
    assert get(sessions, live).status == "processing"
    rec = get(sessions, dead)
    assert (rec.status, rec.retry_count) == ("failed", 3)
    assert rec.error_message == "Max retries exceeded (3): Worker lost: no heartbeat for 400s"


def test_sql_reset_makes_failed_recordings_dispatchable(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    skipped = register(sessions, "skip.m4a")
    c = claim(sessions, rid)
    with transaction(sessions) as s:
        lifecycle.fail_attempt(s, c, error=PermanentError("File not found: /in/call.m4a"), now=T0, policy=POLICY)
        assert lifecycle.find_dispatchable(s, now=T0, live_task_ids=set()) == [(skipped, None, "skip.m4a")]
    with sessions.begin() as s:  # exactly what the operator runs
        s.execute(
            text("UPDATE recordings SET status='queued', error_message=NULL, retry_count=0 WHERE status='failed'")
        )
        s.execute(text("UPDATE recordings SET status='skipped' WHERE file_name='skip.m4a'"))
    with transaction(sessions) as s:
        due = lifecycle.find_dispatchable(s, now=T0, live_task_ids=set())
    assert [r for r, _, _ in due] == [rid]
    assert claim(sessions, rid, task="t9").attempt == 2


def test_skip_then_reset_of_a_dead_workers_recording_is_dispatchable(sessions: sessionmaker[Session]) -> None:
    """The dead worker's message is still unacknowledged in Redis (live); reset clears the task id and the attempt."""
    rid = register(sessions)
    c = claim(sessions, rid, task="m-dead")
    with transaction(sessions) as s:
        assert [x.new_status for x in lifecycle.skip_recordings(s, now=T0, ids=[rid])] == ["skipped"]
        assert [x.new_status for x in lifecycle.reset_recordings(s, now=T0, ids=[rid])] == ["queued"]
    with transaction(sessions) as s:
        assert lifecycle.find_dispatchable(s, now=T0, live_task_ids={"m-dead"}) == [(rid, None, "call.m4a")]
    [attempt] = attempts(sessions, rid)
    assert (attempt.id, attempt.outcome, attempt.error_message) == (
        c.attempt_id,
        "lost",
        "Skipped by an operator while this attempt ran",
    )
    with pytest.raises(LeaseLost), transaction(sessions) as s:  # the dead attempt can write nothing any more
        lifecycle.save_progress(s, c, now=T0, first_idx=0, segments=[], progress_seconds=1.0)


def test_a_claimed_task_id_is_spent_even_while_the_broker_holds_it(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    claim(sessions, rid, task="m-running")
    with sessions.begin() as s:  # the operator's careless requeue of a running (or dead) call
        s.execute(text("UPDATE recordings SET status='queued' WHERE status='processing'"))
    with transaction(sessions) as s:
        assert lifecycle.find_dispatchable(s, now=T0, live_task_ids={"m-running"}) == [(rid, "m-running", "call.m4a")]
        assert lifecycle.find_dispatchable(s, now=T0, live_task_ids=None) == [(rid, "m-running", "call.m4a")]


def test_dispatch_skips_recordings_whose_message_is_live(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    with transaction(sessions) as s:
        assert lifecycle.mark_dispatched(s, recording_id=rid, previous_task_id=None, task_id="m1", now=T0)
        assert not lifecycle.mark_dispatched(s, recording_id=rid, previous_task_id=None, task_id="m2", now=T0)
    with transaction(sessions) as s:
        assert lifecycle.find_dispatchable(s, now=T0, live_task_ids={"m1"}) == []
        # Redis flushed: the message is gone, so the recording is sent again.
        assert lifecycle.find_dispatchable(s, now=T0, live_task_ids=set()) == [(rid, "m1", "call.m4a")]
        # ... but not while its sender may still be sending it (committed first, sent a moment later).
        later = T0 + timedelta(seconds=10)
        assert lifecycle.find_dispatchable(s, now=later, live_task_ids=set(), send_grace=30) == []
        assert lifecycle.find_dispatchable(s, now=later, live_task_ids=set(), send_grace=5) == [(rid, "m1", "call.m4a")]
        # Broker unknown: only never-dispatched recordings are sent.
        assert lifecycle.find_dispatchable(s, now=T0, live_task_ids=None) == []


def test_resume_after_an_interrupted_attempt(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    first = claim(sessions, rid)
    with transaction(sessions) as s:
        lifecycle.save_progress(s, first, now=T0, first_idx=0, segments=[Segment(0, 30, "one")], progress_seconds=30)
        lifecycle.fail_attempt(s, first, error=WorkerLost("Worker lost: model process exited"), now=T0, policy=POLICY)
    second = claim(sessions, rid, now=T0 + timedelta(hours=1))
    assert (second.resume_from, second.next_segment_idx) == (30.0, 1)
    with transaction(sessions) as s:
        lifecycle.save_progress(s, second, now=T0, first_idx=1, segments=[Segment(30, 60, "two")], progress_seconds=60)
        lifecycle.complete_recording(
            s, second, segments=load_segments(s, second.recording_id), now=T0, language="en", duration_seconds=60
        )
    assert get(sessions, rid).transcript == "one two"
    assert [(a.outcome, a.audio_start_seconds) for a in attempts(sessions, rid)] == [("lost", 0.0), ("succeeded", 30.0)]
    # An operator re-queues the finished recording: it is transcribed again from the start.
    with sessions.begin() as s:
        s.execute(text("UPDATE recordings SET status='queued'"))
    third = claim(sessions, rid, now=T0 + timedelta(hours=2))
    assert (third.resume_from, third.next_segment_idx) == (0.0, 0)
    with sessions() as s:
        assert s.scalars(select(SegmentRow).where(SegmentRow.recording_id == rid)).all() == []


def test_raw_sql_update_moves_updated_at(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    with sessions.begin() as s:
        s.execute(text("UPDATE recordings SET updated_at = :t"), {"t": T0 - timedelta(days=1)})
    with sessions.begin() as s:
        s.execute(text("UPDATE recordings SET error_message = 'x'"))
    assert get(sessions, rid).updated_at > T0


def test_database_rejects_unknown_status(sessions: sessionmaker[Session]) -> None:
    register(sessions)
    with pytest.raises(Exception, match="(?i)check"), sessions.begin() as s:
        s.execute(text("UPDATE recordings SET status = 'done'"))
