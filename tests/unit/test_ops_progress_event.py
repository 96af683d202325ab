"""The progress event as Flower reads it: Celery's event state keeps its ``result`` on the task."""

from __future__ import annotations

import time

from celery.events.state import State


def test_a_progress_event_shows_in_the_tasks_result_and_state() -> None:
    state = State()
    now = time.time()
    state.event(
        {"type": "task-started", "uuid": "t1", "hostname": "w1", "timestamp": now, "local_received": now, "clock": 1}
    )
    state.event({
        "type": "task-progress", "uuid": "t1", "hostname": "w1", "clock": 2,
        "timestamp": now + 1, "local_received": now + 1,
        "recording_id": "r1", "done_seconds": 90.0, "duration_seconds": 600.0, "percent": 15.0,
        "result": "15.0% (90 of 600.0 s)",
    })  # fmt: skip
    task = state.tasks["t1"]
    assert task.state == "PROGRESS"
    assert task.result == "15.0% (90 of 600.0 s)"  # Flower's task list shows this in its Result column
