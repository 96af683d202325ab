"""The supervised runner against a real child process: one request's replies never reach the next.

The child is a stand-in (``tests/stub_model_process.py``) that speaks the model process's
protocol and keeps talking after its reader stops, as the real one does mid-call.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

from transcriber.errors import AttemptTimeout, ModelNotFound, WorkerLost
from transcriber.runner import Deadline, Done, Info, ModelConfig, Request, SupervisedModel
from transcriber.segments import Segment

STUB = [sys.executable, str(Path(__file__).parents[1] / "stub_model_process.py")]


@pytest.fixture
def runner() -> SupervisedModel:
    model = SupervisedModel(ModelConfig("stub"), command=STUB)
    yield model
    model.close()


def texts(runner: SupervisedModel, path: str, **options: object) -> list[str]:
    events = runner.transcribe(Request(path, 0.0, dict(options)), deadline=None, tick=5.0)
    return [e.text for e in events if isinstance(e, Segment)]


def test_a_stream_left_early_never_feeds_the_next_request(runner: SupervisedModel) -> None:
    first = runner.transcribe(Request("/in/A.m4a", 0.0, {"segments": 50, "pause": 0.01}), deadline=None)
    with contextlib.closing(first):
        for event in first:
            if isinstance(event, Segment):
                break  # the consumer stops early: a database or broker error in the attempt
    assert texts(runner, "/in/B.m4a", segments=3) == ["B 0", "B 1", "B 2"]


def test_a_stream_abandoned_without_closing_is_ended_by_the_next_request(runner: SupervisedModel) -> None:
    """Even a consumer that forgets to close: the id filter drops A's replies that are still in the pipe."""
    first = runner.transcribe(Request("/in/A.m4a", 0.0, {"segments": 20}), deadline=None)
    assert isinstance(next(first), Info)
    assert texts(runner, "/in/B.m4a", segments=2) == ["B 0", "B 1"]
    first.close()


def test_replies_for_another_request_id_are_dropped(runner: SupervisedModel) -> None:
    assert texts(runner, "/in/C.m4a", segments=2, stale=True) == ["C 0", "C 1"]


def test_the_deadline_kills_the_child_and_the_next_request_starts_clean(runner: SupervisedModel) -> None:
    deadline = Deadline(lambda _duration: 0.3, None)
    events = runner.transcribe(Request("/in/slow.m4a", 0.0, {"segments": 100, "pause": 0.05}), deadline=deadline)
    with pytest.raises(AttemptTimeout), contextlib.closing(events):
        for _ in events:
            pass
    assert runner.pid is None  # killed
    assert texts(runner, "/in/next.m4a", segments=2) == ["next 0", "next 1"]


def test_a_finished_stream_keeps_its_process(runner: SupervisedModel) -> None:
    events = list(runner.transcribe(Request("/in/D.m4a", 0.0, {"segments": 1}), deadline=None))
    assert isinstance(events[-1], Done)
    pid = runner.pid
    assert texts(runner, "/in/E.m4a", segments=1) == ["E 0"] and runner.pid == pid


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX signal")
def test_a_model_process_killed_while_loading_is_a_lost_worker_not_a_missing_model() -> None:
    """The OOM killer during the load: the attempt is retried. A model process that exits by itself: for good."""
    dies = "import os, signal, sys; sys.stdin.readline(); os.kill(os.getpid(), signal.SIGKILL)"
    killed = SupervisedModel(ModelConfig("stub"), command=[sys.executable, "-c", dies])
    with pytest.raises(WorkerLost, match=r"^Worker lost: model process exited with code -9 while loading the model$"):
        killed.start()
    broken = SupervisedModel(ModelConfig("stub"), command=[sys.executable, "-c", "import sys; sys.exit(1)"])
    with pytest.raises(ModelNotFound, match="Could not load Whisper model 'stub'"):
        broken.start()
