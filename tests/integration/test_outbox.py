"""Webhook events are written by the lifecycle in the transaction of the state change that causes them.

Real databases (Postgres and SQLite). Delivery is tested in test_webhooks.py; here: which state changes
write which event, with what body, and that an event exists exactly when its change does.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle
from transcriber.db import transaction
from transcriber.errors import AttemptTimeout, PermanentError
from transcriber.segments import Segment
from transcriber.tables import Attempt, WebhookEvent
from transcriber.transcripts import load_segments

from .test_lifecycle import POLICY, T0, claim, register


def events(sessions: sessionmaker[Session]) -> list[tuple[str, dict[str, object]]]:
    with sessions() as s:
        rows = s.execute(select(WebhookEvent).order_by(WebhookEvent.id)).scalars().all()
        return [(row.event, json.loads(row.body)) for row in rows]


def complete(sessions: sessionmaker[Session], rid: uuid.UUID, *, notify: bool, texts: list[str]) -> None:
    c = claim(sessions, rid)
    segs = [Segment(float(i * 3), float(i * 3 + 3), t) for i, t in enumerate(texts)]
    with transaction(sessions) as s:
        lifecycle.save_progress(s, c, now=T0, first_idx=0, segments=segs, progress_seconds=len(segs) * 3.0)
        lifecycle.complete_recording(
            s, c, segments=load_segments(s, rid), now=T0 + timedelta(seconds=9), language="en",
            duration_seconds=len(segs) * 3.0, notify=notify,
        )  # fmt: skip


def test_completed_writes_one_event_with_the_recordings_facts(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions, "Call recording +18134353769_200301_171119.m4a")
    complete(sessions, rid, notify=True, texts=[" Hello, thanks for calling.", " Goodbye."])
    [(event, body)] = events(sessions)
    assert event == "recording.completed"
    assert body["event"] == "recording.completed"
    uuid.UUID(str(body["event_id"]))
    assert (body["recording_id"], body["status"], body["retry_count"], body["duration_seconds"]) == (
        str(rid), "completed", 0, 6.0,
    )  # fmt: skip
    assert body["file_name"] == "Call recording +18134353769_200301_171119.m4a"
    assert body["error_message"] is None and body["needs_review"] is False


def test_nothing_is_written_without_notify(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    complete(sessions, rid, notify=False, texts=[" Hello."])
    other = register(sessions, "bad.m4a")
    c = claim(sessions, other)
    with transaction(sessions) as s:
        lifecycle.fail_attempt(s, c, error=PermanentError("Unreadable audio: bad header"), now=T0, policy=POLICY)
    assert events(sessions) == []


def test_a_flagged_transcript_also_writes_needs_review(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    c = claim(sessions, rid)
    with transaction(sessions) as s:
        lifecycle.save_progress(s, c, now=T0, first_idx=0, segments=[Segment(0, 3, " Hello.")], progress_seconds=3)
        lifecycle.complete_recording(
            s, c, segments=load_segments(s, rid), now=T0, language="en", duration_seconds=3.0,
            speaker_review="one voice heard in 40 s of speech", notify=True,
        )  # fmt: skip
    found = events(sessions)
    assert [e for e, _ in found] == ["recording.completed", "recording.needs_review"]
    assert found[1][1]["needs_review"] is True
    assert found[1][1]["review_reasons"] == ["one voice heard in 40 s of speech"]
    assert found[0][1]["event_id"] != found[1][1]["event_id"]


def test_failed_for_good_writes_failed_with_the_root_cause_and_retries(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    now = T0
    for _ in range(4):  # three retries, then failed: only the last attempt's change is an event
        c = claim(sessions, rid, now=now)
        with transaction(sessions) as s:
            lifecycle.fail_attempt(s, c, error=AttemptTimeout(1800), now=now, policy=POLICY, notify=True)
        now += timedelta(hours=2)
    [(event, body)] = events(sessions)
    assert event == "recording.failed"
    assert (body["status"], body["retry_count"], body["cause"]) == ("failed", 3, "timeout")
    assert body["error_message"] == "Max retries exceeded (3): Timeout exceeded: TimeLimitExceeded(1800)"
    with sessions() as s:
        assert set(s.scalars(select(Attempt.cause).where(Attempt.recording_id == rid))) == {"timeout"}


def test_a_permanent_failure_is_classified(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions)
    c = claim(sessions, rid)
    with transaction(sessions) as s:
        lifecycle.fail_attempt(s, c, error=PermanentError("Unreadable audio: bad header"), now=T0, policy=POLICY,
                               notify=True)  # fmt: skip
    [(event, body)] = events(sessions)
    assert (event, body["cause"], body["error_message"]) == ("recording.failed", "unreadable",
                                                             "Unreadable audio: bad header")  # fmt: skip


def test_rescue_that_spends_the_last_retry_writes_failed(sessions: sessionmaker[Session]) -> None:
    rid = register(sessions, "dead.m4a")
    claim(sessions, rid, now=T0)
    with sessions.begin() as s:
        s.execute(text("UPDATE recordings SET retry_count = 3 WHERE file_name = 'dead.m4a'"))
    with transaction(sessions) as s:
        lifecycle.rescue_stuck(s, now=T0 + timedelta(seconds=400), stuck_timeout=300, policy=POLICY, notify=True)
    [(event, body)] = events(sessions)
    assert (event, body["cause"], body["retry_count"]) == ("recording.failed", "worker_lost", 3)
    with sessions() as s:
        assert s.scalars(select(Attempt.cause).where(Attempt.recording_id == rid)).all() == ["worker_lost"]


def test_no_event_outlives_a_rolled_back_change(sessions: sessionmaker[Session]) -> None:
    """The event is part of the state change: a transaction that does not commit leaves neither."""
    rid = register(sessions)
    c = claim(sessions, rid)
    with pytest.raises(RuntimeError), transaction(sessions) as s:
        lifecycle.fail_attempt(s, c, error=PermanentError("Unreadable audio: x"), now=T0, policy=POLICY, notify=True)
        raise RuntimeError("the commit never happens (the database went away)")
    assert events(sessions) == []
    with sessions() as s:
        assert s.scalar(text("SELECT status FROM recordings")) == "processing"
