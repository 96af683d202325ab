"""A long call in pieces: the lifecycle of each piece and of the one recording operators see (real databases)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle, outbox
from transcriber.coverage import Gap
from transcriber.db import transaction
from transcriber.errors import AttemptTimeout, LeaseLost, PermanentError
from transcriber.segments import Segment
from transcriber.tables import Attempt, Piece, Recording, WebhookEvent
from transcriber.transcripts import load_segments

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = lifecycle.RetryPolicy(max_retries=2, backoff_base=10, backoff_cap=600)
CUTS = (600.0, 1200.0)
DURATION = 1800.0


def register(sessions: sessionmaker[Session]) -> uuid.UUID:
    with transaction(sessions) as s:
        rec, _ = lifecycle.register_recording(s, file_path="/in/long.m4a", file_name="long.m4a", file_size=10,
                                              content_sha256=uuid.uuid4().hex * 2, now=T0,
                                              duration_seconds=DURATION)  # fmt: skip
        return rec.id


def cut(sessions: sessionmaker[Session], rid: uuid.UUID) -> lifecycle.Claim:
    """Claim the call (attempt 1) and cut it in three: attempt 1 keeps piece 0."""
    with transaction(sessions) as s:
        claim = lifecycle.claim_recording(s, recording_id=rid, task_id="t-rec", worker="w1", now=T0)
        assert claim is not None
        return lifecycle.plan_pieces(s, claim, cuts=CUTS, duration=DURATION, channels="mono", now=T0)


def take(sessions: sessionmaker[Session], rid: uuid.UUID, piece: int, now: datetime = T0) -> lifecycle.Claim | None:
    with transaction(sessions) as s:
        return lifecycle.claim_piece(s, recording_id=rid, piece=piece, task_id=f"t-{piece}-{now:%M%S}",
                                     worker=f"w{piece}", now=now)  # fmt: skip


def hear(sessions: sessionmaker[Session], claim: lifecycle.Claim, text_: str, now: datetime = T0) -> None:
    """The piece's worker saves one segment in the middle of its piece, and heartbeats."""
    end = claim.piece_end or DURATION
    middle = (claim.piece_start + end) / 2
    with transaction(sessions) as s:
        lifecycle.save_progress(s, claim, now=now, first_idx=claim.next_segment_idx,
                                segments=[Segment(middle, middle + 2, text_)], progress_seconds=middle + 2)  # fmt: skip


def finish(sessions: sessionmaker[Session], claim: lifecycle.Claim, now: datetime = T0) -> lifecycle.Claim | None:
    with transaction(sessions) as s:
        return lifecycle.complete_piece(s, claim, now=now, speech=[Gap(claim.piece_start + 1, claim.piece_start + 5)],
                                        language="en", language_probability=0.9)  # fmt: skip


def merge(sessions: sessionmaker[Session], claim: lifecycle.Claim, now: datetime = T0) -> None:
    with transaction(sessions) as s:
        lifecycle.complete_recording(s, claim, now=now, segments=load_segments(s, claim.recording_id), language="en",
                                     duration_seconds=DURATION, notify=True)  # fmt: skip


def pieces(sessions: sessionmaker[Session], rid: uuid.UUID) -> list[Piece]:
    with sessions() as s:
        return list(s.scalars(select(Piece).where(Piece.recording_id == rid).order_by(Piece.idx)))


def recording(sessions: sessionmaker[Session], rid: uuid.UUID) -> Recording:
    with sessions() as s:
        rec = s.get(Recording, rid)
        assert rec is not None
        return rec


def attempts(sessions: sessionmaker[Session], rid: uuid.UUID) -> list[tuple[int, int | None, str]]:
    with sessions() as s:
        rows = s.execute(select(Attempt.attempt, Attempt.piece, Attempt.outcome).where(Attempt.recording_id == rid)
                         .order_by(Attempt.attempt)).all()  # fmt: skip
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_cut_call_keeps_piece_zero_and_queues_the_rest(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    first = cut(sessions, rid)
    assert (first.piece, first.piece_start, first.piece_end, first.next_segment_idx) == (0, 0.0, 600.0, 0)
    assert [(p.idx, p.start_seconds, p.end_seconds, p.status) for p in pieces(sessions, rid)] == [
        (0, 0.0, 600.0, "processing"), (1, 600.0, 1200.0, "queued"), (2, 1200.0, 1800.0, "queued"),
    ]  # fmt: skip
    rec = recording(sessions, rid)
    assert (rec.status, rec.current_attempt_id, rec.split_channels) == ("processing", None, "mono")
    assert attempts(sessions, rid) == [(1, 0, "running")]
    with sessions() as s:
        assert lifecycle.find_dispatchable(s, now=T0, live_task_ids=set()) == []  # the recording has no message
        due = lifecycle.find_dispatchable_pieces(s, now=T0, live_task_ids=set())
    assert [(r, p, t) for r, p, t, _ in due] == [(rid, 1, None), (rid, 2, None)]


def test_pieces_run_side_by_side_and_the_last_one_merges(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    zero = cut(sessions, rid)
    two, one = take(sessions, rid, 2), take(sessions, rid, 1)
    assert one is not None and two is not None
    assert take(sessions, rid, 1) is None  # a redelivered message of a taken piece is a no-op
    assert (one.attempt, two.attempt) == (3, 2) and one.next_segment_idx == lifecycle.SEGMENTS_PER_PIECE
    hear(sessions, two, " third part.")
    hear(sessions, zero, " first part.")
    hear(sessions, one, " second part.")
    rec = recording(sessions, rid)
    assert rec.progress_seconds is not None and abs(rec.progress_seconds - (302 + 302 + 302)) < 0.01  # the sum
    assert finish(sessions, two) is None and finish(sessions, zero) is None
    assert recording(sessions, rid).status == "processing"
    merging = finish(sessions, one)
    assert merging is not None and merging.merge and merging.attempt == one.attempt
    assert recording(sessions, rid).current_attempt_id == one.attempt_id
    merge(sessions, merging)
    rec = recording(sessions, rid)
    assert (rec.status, rec.transcript) == ("completed", "first part. second part. third part.")
    assert rec.progress_seconds == DURATION and rec.current_attempt_id == one.attempt_id
    assert pieces(sessions, rid) == []  # merged: the attempts keep the history
    assert attempts(sessions, rid) == [(1, 0, "succeeded"), (2, 2, "succeeded"), (3, 1, "succeeded")]
    with sessions() as s:
        events = s.scalars(select(WebhookEvent.event).where(WebhookEvent.recording_id == rid)).all()
        assert events == [outbox.Event.COMPLETED.value]


def test_a_piece_retries_on_its_own_and_the_recording_says_which(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    cut(sessions, rid)
    one = take(sessions, rid, 1)
    assert one is not None
    hear(sessions, one, " heard before the limit.")
    with transaction(sessions) as s:
        status = lifecycle.fail_attempt(s, one, error=AttemptTimeout(60), now=T0,
                                        policy=POLICY)  # fmt: skip
    assert status.value == "processing"
    rec = recording(sessions, rid)
    assert (rec.status, rec.retry_count) == ("processing", 1)
    assert rec.error_message == "Piece 2 of 3 (10:00-20:00): Timeout exceeded: TimeLimitExceeded(60)"
    piece = pieces(sessions, rid)[1]
    assert (piece.status, piece.retry_count, piece.task_id) == ("queued", 1, None) and piece.not_before is not None
    assert take(sessions, rid, 1) is None  # waiting out its backoff
    again = take(sessions, rid, 1, now=T0 + timedelta(hours=1))
    assert again is not None and again.resume_from == 902.0  # after what the timed-out attempt saved
    assert again.next_segment_idx == lifecycle.SEGMENTS_PER_PIECE + 1


def test_a_piece_that_fails_for_good_fails_the_call_and_a_reset_requeues_only_it(
    sessions: sessionmaker[Session],
) -> None:
    rid = register(sessions)
    zero = cut(sessions, rid)
    one, two = take(sessions, rid, 1), take(sessions, rid, 2)
    assert one is not None and two is not None
    hear(sessions, zero, " kept.")
    assert finish(sessions, zero) is None
    with transaction(sessions) as s:
        status = lifecycle.fail_attempt(s, one, error=PermanentError("Unreadable audio: bad frame"), now=T0,
                                        policy=POLICY, notify=True)  # fmt: skip
    assert status.value == "failed"
    rec = recording(sessions, rid)
    assert (rec.status, rec.error_message) == (
        "failed",
        "Piece 2 of 3 (10:00-20:00): Unreadable audio: bad frame",
    )
    with sessions() as s:  # one event for the call
        events = s.scalars(select(WebhookEvent.event).where(WebhookEvent.recording_id == rid)).all()
    assert events == ["recording.failed"]
    hear(sessions, two, " still running.")  # the other piece goes on: a reset keeps its work
    assert finish(sessions, two) is None
    # The operator's repair, exactly as it is written in the runbook.
    with transaction(sessions) as s:
        s.execute(text("UPDATE recordings SET status='queued', error_message=NULL, retry_count=0 "
                       "WHERE status='failed'"))  # fmt: skip
        again = lifecycle.claim_recording(s, recording_id=rid, task_id="t-reset", worker="w9", now=T0)
    assert again is not None and again.piece == 1 and again.resume_from == 600.0
    assert [(p.idx, p.status, p.retry_count) for p in pieces(sessions, rid)] == [
        (0, "completed", 0), (1, "processing", 0), (2, "completed", 0),
    ]  # fmt: skip
    merging = finish(sessions, again)
    assert merging is not None
    merge(sessions, merging)
    rec = recording(sessions, rid)
    assert (rec.status, rec.transcript, rec.error_message) == ("completed", "kept. still running.", None)


def test_rescue_takes_a_silent_piece_not_the_recording(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    zero = cut(sessions, rid)
    later = T0 + timedelta(minutes=10)
    one = take(sessions, rid, 1, now=later)
    assert one is not None
    hear(sessions, one, " alive.", now=later)
    with transaction(sessions) as s:  # piece 0's worker died at T0; piece 1's heartbeat is fresh; 2 waits queued
        rescued = lifecycle.rescue_stuck(s, now=later, stuck_timeout=300, policy=POLICY)
    assert rescued is not None and len(rescued) == 1 and rescued[0].recording_id == rid
    assert rescued[0].error_message.startswith("Piece 1 of 3 (00:00-10:00): Worker lost: no heartbeat for 600s")
    assert [(p.idx, p.status) for p in pieces(sessions, rid)] == [(0, "queued"), (1, "processing"), (2, "queued")]
    assert recording(sessions, rid).status == "processing"
    assert attempts(sessions, rid)[0] == (1, 0, "lost")
    with transaction(sessions) as s:
        try:
            lifecycle.save_progress(s, zero, now=later, first_idx=0, segments=[], progress_seconds=10.0)
        except LeaseLost:
            pass
        else:
            raise AssertionError("the rescued piece's old attempt could still write")


def test_a_merge_that_died_is_rescued_and_only_merged_again(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    zero = cut(sessions, rid)
    one, two = take(sessions, rid, 1), take(sessions, rid, 2)
    assert one is not None and two is not None
    for claim in (zero, one, two):
        hear(sessions, claim, f" part {claim.piece}.")
    assert finish(sessions, zero) is None and finish(sessions, one) is None
    assert finish(sessions, two) is not None  # its worker dies before the merge commits
    later = T0 + timedelta(minutes=10)
    with transaction(sessions) as s:
        rescued = lifecycle.rescue_stuck(s, now=later, stuck_timeout=300, policy=POLICY)
    assert rescued is not None and [r.status.value for r in rescued] == ["queued"]
    with transaction(sessions) as s:
        merging = lifecycle.claim_recording(
            s, recording_id=rid, task_id="t-merge", worker="w5", now=later + timedelta(hours=1)
        )  # after the backoff
    assert merging is not None and merging.merge and merging.piece is None
    merge(sessions, merging, now=later)
    assert recording(sessions, rid).transcript == "part 0. part 1. part 2."
    assert [a[1:] for a in attempts(sessions, rid)] == [(0, "succeeded"), (1, "succeeded"), (2, "lost"),
                                                         (None, "succeeded")]  # fmt: skip


def test_skip_stops_the_pieces(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    zero = cut(sessions, rid)
    with transaction(sessions) as s:
        lifecycle.skip_recordings(s, now=T0, ids=[rid])
    assert take(sessions, rid, 1) is None
    with transaction(sessions) as s:
        try:
            lifecycle.save_progress(s, zero, now=T0, first_idx=0, segments=[], progress_seconds=5.0)
        except LeaseLost:
            pass
        else:
            raise AssertionError("a piece of a skipped call could still write")
    with sessions() as s:
        assert lifecycle.find_dispatchable_pieces(s, now=T0, live_task_ids=set()) == []


def test_two_pieces_failing_for_good_fail_the_call_once(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    cut(sessions, rid)
    one, two = take(sessions, rid, 1), take(sessions, rid, 2)
    assert one is not None and two is not None
    for claim in (one, two):
        with transaction(sessions) as s:
            lifecycle.fail_attempt(s, claim, error=PermanentError(f"Unreadable audio: piece {claim.piece}"), now=T0,
                                   policy=POLICY, notify=True)  # fmt: skip
    rec = recording(sessions, rid)
    assert (rec.status, rec.error_message) == ("failed", "Piece 2 of 3 (10:00-20:00): Unreadable audio: piece 1")
    with sessions() as s:
        events = s.scalars(select(WebhookEvent.event).where(WebhookEvent.recording_id == rid)).all()
    assert events == ["recording.failed"]  # the first cause is the call's; one event
