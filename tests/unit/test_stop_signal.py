"""`transcriber run` stops its worker with one signal, and the worker takes that same signal as a warm shutdown."""

from __future__ import annotations

import signal
import sys
from types import SimpleNamespace
from typing import Any

import celery.apps.worker  # before any test pretends to be on Windows: it imports psutil, which checks
import pytest

from transcriber import supervisor, tasks


@pytest.mark.parametrize(("platform", "name"), [("win32", "SIGBREAK"), ("linux", "SIGTERM"), ("darwin", "SIGTERM")])
def test_the_stop_signal_per_platform(platform: str, name: str) -> None:
    assert supervisor.stop_signal(platform) == name


class FakeChild:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def poll(self) -> int | None:
        return None if not self.sent else 0

    def send_signal(self, sig: int) -> None:
        self.sent.append(sig)

    def wait(self, timeout: float) -> int:
        return 0


def installed_for(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Call the worker's worker_ready hook with a stand-in consumer; return the signals it gave Celery's handler."""
    names: list[str] = []
    monkeypatch.setattr(celery.apps.worker, "install_worker_term_handler", lambda worker, sig: names.append(sig))
    tasks._stop_warmly_on_the_supervisors_signal(sender=SimpleNamespace(controller=SimpleNamespace(hostname="w")))
    return names


def test_on_windows_the_worker_takes_what_the_supervisor_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(signal, "CTRL_BREAK_EVENT", 1, raising=False)  # Windows' constant, on any test machine
    child = FakeChild()
    supervisor.stop_child(child, grace=1)  # type: ignore[arg-type]
    assert child.sent == [signal.CTRL_BREAK_EVENT]  # which a Windows child receives as SIGBREAK
    assert installed_for(monkeypatch) == [supervisor.stop_signal()] == ["SIGBREAK"]


def test_elsewhere_both_sides_are_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    child = FakeChild()
    supervisor.stop_child(child, grace=1)  # type: ignore[arg-type]
    assert child.sent == [signal.SIGTERM]
    assert installed_for(monkeypatch) == ["SIGTERM"]


def test_no_worker_no_handler(monkeypatch: Any) -> None:
    monkeypatch.setattr(celery.apps.worker, "install_worker_term_handler", lambda *a, **k: pytest.fail("called"))
    tasks._stop_warmly_on_the_supervisors_signal(sender=None)
