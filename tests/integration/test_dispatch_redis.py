"""Dispatch against a real Redis broker: lost messages are resent, live ones are not duplicated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle, maintenance
from transcriber.broker import live_task_ids
from transcriber.celery_app import CONTROL_QUEUE, TRANSCRIBE_QUEUE, app, celery_config
from transcriber.db import transaction
from transcriber.settings import load_settings
from transcriber.tables import Recording
from transcriber.tasks import send_transcribe

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_dispatch_resends_only_what_the_broker_lost(
    sessions: sessionmaker[Session], redis_url: str, monkeypatch
) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", redis_url)
    app.conf.update(celery_config(load_settings()))
    with transaction(sessions) as s:
        for n in range(3):
            lifecycle.register_recording(
                s, file_path=f"/in/{n}.m4a", file_name=f"{n}.m4a", file_size=1, content_sha256=f"{n}" * 64, now=T0
            )

    def dispatch(now: datetime) -> int | None:
        return maintenance.dispatch_queued(
            sessions,
            now=now,
            live_task_ids=live_task_ids(app, [TRANSCRIBE_QUEUE, CONTROL_QUEUE]),
            send=send_transcribe,
        )

    assert dispatch(T0) == 3
    with sessions() as s:
        sent = set(s.scalars(select(Recording.task_id)))
    assert live_task_ids(app, [TRANSCRIBE_QUEUE]) == sent
    assert dispatch(T0 + timedelta(minutes=1)) == 0  # all three still wait in Redis: nothing duplicated
    redis.Redis.from_url(redis_url).flushdb()  # Redis lost everything
    assert dispatch(T0 + timedelta(minutes=2)) == 3
    with sessions() as s:
        resent = set(s.scalars(select(Recording.task_id)))
    assert resent.isdisjoint(sent) and live_task_ids(app, [TRANSCRIBE_QUEUE]) == resent


def test_two_beats_dispatch_once_per_interval(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as s:
        lifecycle.register_recording(
            s, file_path="/in/a.m4a", file_name="a.m4a", file_size=1, content_sha256="a" * 64, now=T0
        )
    sent: list[str] = []

    def run(now: datetime) -> int | None:
        return maintenance.dispatch_queued(
            sessions, now=now, live_task_ids=set(), send=lambda rid, tid, name: sent.append(tid), interval=60
        )

    assert run(T0) == 1
    assert run(T0 + timedelta(seconds=5)) is None  # the second beat's tick in the same interval
    assert run(T0 + timedelta(seconds=61)) == 1  # next interval: the message was lost, send again
    assert len(sent) == 2
