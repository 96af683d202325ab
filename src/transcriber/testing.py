"""An in-memory model runner, so every path of an attempt is a test of well under a second.

Like a stub broker, ``FakeRunner`` replaces only the model: the attempt still claims,
heartbeats, saves and completes against a real database. A script is the list of
what the "model" does for one request, in order:

- an event (``Info``, ``Segment``, ``Reached``, ``Done``, ``Tick``): yielded to the attempt;
- an exception instance: raised from the runner, as the real one raises
  ``AttemptTimeout``, ``WorkerLost`` or ``PermanentError``;
- a callable: called with no argument before the next step (an operator's SQL, a
  Ctrl-C), to make something happen at that point of the stream.

The real model and the real model process stay on the acceptance path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from transcriber.coverage import Gap
from transcriber.runner import Deadline, Done, Event, Events, Info, Request
from transcriber.segments import Segment

Step = Event | BaseException | Callable[[], object]


def speech(duration: float, *texts: str, language: str = "en") -> list[Step]:
    """A script for a call of ``duration`` seconds whose sentences are spread evenly over it."""
    step = duration / max(len(texts), 1)
    segments: list[Step] = [Segment(i * step, (i + 1) * step, f" {t}", avg_logprob=-0.2) for i, t in enumerate(texts)]
    return [Info(duration), *segments, Done(language, 0.99, speech=(Gap(0.0, duration),))]


@dataclass
class FakeRunner:
    """Plays ``scripts[path]`` for each request; records what it was asked and how each stream ended."""

    scripts: dict[str, Sequence[Step]]
    requests: list[Request] = field(default_factory=list)
    deadlines: list[Deadline | None] = field(default_factory=list)
    finished: int = 0  # streams that ran to done or error
    cut_short: int = 0  # streams the consumer left early (the real runner kills its process then)
    started: int = 0
    closed: bool = False

    def start(self) -> None:
        self.started += 1

    def transcribe(self, request: Request, *, deadline: Deadline | None, tick: float = 5.0) -> Events:
        self.requests.append(request)
        self.deadlines.append(deadline)
        done = False
        try:
            for step in self.scripts[request.path]:
                if isinstance(step, BaseException):
                    done = True
                    raise step
                if callable(step):
                    step()
                    continue
                if isinstance(step, Segment) and step.end <= request.start:
                    continue  # a resumed attempt starts after what was saved
                if isinstance(step, Done):
                    done = True
                yield step
                if done:
                    return
        finally:
            if done:
                self.finished += 1
            else:
                self.cut_short += 1

    def close(self) -> None:
        self.closed = True
