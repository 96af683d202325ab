"""What broker.py reads of kombu's Redis channel, against a real Redis: loud when kombu changes it."""

from __future__ import annotations

import logging

import kombu.transport.redis
import pytest
from celery import Celery

from transcriber.broker import live_task_ids

QUEUE = "transcriber"


@pytest.fixture
def app(redis_url: str) -> Celery:
    return Celery("ops-broker-test", broker=redis_url, set_as_current=False)


def test_kombu_still_has_the_channel_internals_broker_py_reads(app: Celery) -> None:
    """If this fails after a kombu upgrade, broker._redis_ids must follow kombu (and pyproject's pin move)."""
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        assert isinstance(channel, kombu.transport.redis.Channel)
        assert isinstance(channel.priority_steps, list | tuple) and 0 in channel.priority_steps
        assert channel._q_for_pri(QUEUE, 0) == QUEUE  # priority 0 is the queue's own list
        assert channel._q_for_pri(QUEUE, 3) != QUEUE
        assert isinstance(channel.unacked_key, str)


def test_waiting_and_delivered_messages_are_both_live(app: Celery) -> None:
    app.send_task("transcriber.transcribe", args=["r1"], task_id="waiting-1", queue=QUEUE)
    app.send_task("transcriber.transcribe", args=["r2"], task_id="delivered-2", queue=QUEUE, priority=3)  # own list
    app.send_task("transcriber.transcribe", args=["r3"], task_id="waiting-3", queue=QUEUE)
    assert live_task_ids(app, [QUEUE]) == {"waiting-1", "delivered-2", "waiting-3"}

    with app.connection_for_read() as consumer:  # a worker holding one message, not acknowledged yet
        held = consumer.SimpleQueue(QUEUE).get(timeout=10)
        assert held.headers["id"] in {"waiting-1", "delivered-2", "waiting-3"}
        channel = consumer.default_channel
        assert any(held.headers["id"] in raw.decode() for raw in channel.client.hvals(channel.unacked_key))
        assert live_task_ids(app, [QUEUE]) == {"waiting-1", "delivered-2", "waiting-3"}
        held.ack()
    assert live_task_ids(app, [QUEUE]) == {"waiting-1", "delivered-2", "waiting-3"} - {held.headers["id"]}


def test_a_broker_that_is_down_is_unknown(caplog: pytest.LogCaptureFixture) -> None:
    down = Celery("ops-broker-down", broker="redis://:s3cret@127.0.0.1:1/0", set_as_current=False)
    with caplog.at_level(logging.WARNING, logger="transcriber.broker"):
        assert live_task_ids(down, [QUEUE]) is None
    assert "could not inspect the broker: OperationalError" in caplog.text and "s3cret" not in caplog.text


def test_kombu_without_those_internals_is_an_error_not_a_down_broker(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, ``except Exception`` took this for "the broker is down" and dispatch went quietly blind."""
    monkeypatch.delattr(kombu.transport.redis.Channel, "_q_for_pri")
    with pytest.raises(AttributeError, match="_q_for_pri"):
        live_task_ids(app, [QUEUE])
