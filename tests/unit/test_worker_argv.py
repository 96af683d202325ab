"""The worker's command line: the pool and concurrency transcriber chooses when the operator does not."""

from __future__ import annotations

import pytest

from transcriber import cli, runner
from transcriber.settings import Settings


def argv(extra: list[str], cores: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(runner.os, "cpu_count", lambda: cores)
    return cli.worker_argv(Settings(_env_file=None, log_level="INFO"), extra)  # type: ignore[call-arg]


def test_threads_one_model_process_per_core_on_every_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not Celery's prefork (its default on Linux): a stop there waits for the running calls to finish instead
    # of handing them back (tests/integration/test_systemd_stop.py stops a threads worker mid-call).
    assert argv([], 4, monkeypatch) == ["worker", "--loglevel=INFO", "--concurrency=4", "--pool=threads"]
    assert argv([], 1, monkeypatch) == ["worker", "--loglevel=INFO", "--concurrency=1", "--pool=solo"]
    assert argv(["--concurrency=3"], 1, monkeypatch)[-1] == "--pool=threads"  # the count given decides
    assert argv(["-c", "1"], 8, monkeypatch)[-1] == "--pool=solo"


def test_the_operators_pool_and_concurrency_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    assert argv(["--pool=prefork"], 4, monkeypatch) == ["worker", "--pool=prefork", "--loglevel=INFO",
                                                         "--concurrency=4"]  # fmt: skip
    assert argv(["-P", "solo"], 4, monkeypatch) == ["worker", "-P", "solo", "--loglevel=INFO", "--concurrency=1"]
    assert argv(["--pool=threads", "--concurrency=2"], 8, monkeypatch) == [
        "worker", "--pool=threads", "--concurrency=2", "--loglevel=INFO"]  # fmt: skip
