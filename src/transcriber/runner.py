"""The model runner: a supervised child process that holds the model across tasks.

Why a child process: the time limit must be real on every Celery pool. Celery's own
limits do nothing under ``solo`` and ``threads`` (what Windows runs), and a thread
stuck in CTranslate2 cannot be interrupted. A process can always be killed
(``Popen.kill`` is TerminateProcess on Windows). The model is loaded once per child
and reused; only a timeout or a crash costs a reload.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from transcriber.errors import AttemptTimeout, ModelNotFound, PermanentError, RetryableError, WorkerLost
from transcriber.model_store import resolve_model
from transcriber.settings import Settings

log = logging.getLogger(__name__)

_EOF = object()


@dataclass(frozen=True)
class ModelConfig:
    """How to load the model (resolved path or name, device, precision, threads)."""

    model: str
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0
    download_root: str | None = None


def model_config_for(settings: Settings, *, concurrency: int = 1) -> ModelConfig:
    """Resolve the model offline and pick device, precision and threads ("auto" means the obvious).

    With ``WHISPER_CPU_THREADS=0`` the cores are divided between the worker's model
    processes, so two cores are used fully and never oversubscribed.
    """
    device = settings.whisper_device
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    compute = settings.whisper_compute_type
    if compute == "auto":
        compute = "float16" if device == "cuda" else "int8"
    download_root = str(settings.whisper_model_dir) if settings.whisper_model_dir else None
    return ModelConfig(
        model=resolve_model(settings.whisper_model, settings.whisper_model_dir),
        device=device,
        compute_type=compute,
        cpu_threads=settings.whisper_cpu_threads or max(1, (os.cpu_count() or 1) // max(concurrency, 1)),
        download_root=download_root,
    )


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # no CUDA runtime at all
        return False


def decode_options(settings: Settings) -> dict[str, object]:
    """faster-whisper ``transcribe`` keyword arguments from the settings."""
    return {
        "beam_size": settings.whisper_beam_size,
        "language": settings.whisper_language or None,
        "vad_filter": settings.whisper_vad_filter,
        "batch_size": settings.whisper_batch_size,
        "word_timestamps": settings.whisper_word_timestamps,
        "condition_on_previous_text": settings.whisper_condition_on_previous_text,
        "hallucination_silence_threshold": settings.whisper_hallucination_silence_threshold or None,
        "channels": settings.channels,
        "speakers": list(settings.speakers),
    }


@dataclass(frozen=True)
class Info:
    duration: float
    channels: int = 1


@dataclass(frozen=True)
class SegmentEvent:
    start: float
    end: float
    text: str
    speaker: str | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    words: list[list[Any]] | None = None


@dataclass(frozen=True)
class Done:
    language: str | None
    language_probability: float | None
    rss_mb: float | None = None
    speech_seconds: float | None = None


@dataclass(frozen=True)
class Tick:
    """Nothing new for a while: a chance to heartbeat."""


Event = Info | SegmentEvent | Done | Tick


@dataclass(frozen=True)
class Request:
    path: str
    start: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)


class Runner(Protocol):
    """What the worker needs of a model runner."""

    def transcribe(
        self, request: Request, *, time_limit: float | None, extend_limit: Any = None, tick: float = 5.0
    ) -> Iterator[Event]: ...

    def close(self) -> None: ...


class SupervisedModel:
    """Parent side of ``transcriber.model_process``."""

    def __init__(
        self, config: ModelConfig, *, load_timeout: float = 900.0, max_tasks: int = 0, max_memory_mb: int = 0
    ) -> None:
        self.config = config
        self.load_timeout = load_timeout
        self.max_tasks = max_tasks
        self.max_memory_mb = max_memory_mb
        self.tasks_served = 0
        self.load_seconds: float | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._events: queue.Queue[Any] = queue.Queue()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the child and wait until its model is loaded (not counted in any time limit)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._events = queue.Queue()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        creationflags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "transcriber.model_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            encoding="utf-8",
            env=env,
            creationflags=creationflags,
        )
        threading.Thread(target=self._pump, args=(self._proc, self._events), daemon=True).start()
        self._write(
            {
                "model": self.config.model,
                "device": self.config.device,
                "compute_type": self.config.compute_type,
                "cpu_threads": self.config.cpu_threads,
                "download_root": self.config.download_root,
            }
        )
        message = self._next(time.monotonic() + self.load_timeout)
        if message is _EOF or message is None or message.get("type") != "ready":
            detail = message.get("message") if isinstance(message, dict) else "the model process exited"
            self.kill()
            raise ModelNotFound(f"Could not load Whisper model {self.config.model!r}: {detail}")
        self.load_seconds = float(message["load_seconds"])
        self.tasks_served = 0
        log.info("model %s loaded in %.1fs (pid %s)", self.config.model, self.load_seconds, self._proc.pid)

    def transcribe(
        self, request: Request, *, time_limit: float | None, extend_limit: Any = None, tick: float = 5.0
    ) -> Iterator[Event]:
        """Yield events of one transcription; kill the child at the time limit.

        ``extend_limit(duration)`` may return a longer limit once the audio's
        duration is known (duration-aware limits). Raises ``AttemptTimeout``,
        ``WorkerLost`` (the child died), ``PermanentError`` or ``RetryableError``.
        """
        self.start()
        began = time.monotonic()
        deadline = began + time_limit if time_limit else None
        self._write({"type": "transcribe", "path": request.path, "start": request.start, "options": request.options})
        while True:
            wait_until = time.monotonic() + tick
            if deadline is not None:
                wait_until = min(wait_until, deadline)
            message = self._next(wait_until)
            if message is None:
                if deadline is not None and time.monotonic() >= deadline:
                    self.kill()
                    raise AttemptTimeout(time_limit or 0)
                yield Tick()
                continue
            if message is _EOF:
                code = self._reap()
                raise WorkerLost(f"Worker lost: model process exited with code {code}")
            kind = message["type"]
            if kind == "info":
                if extend_limit is not None and time_limit:
                    time_limit = extend_limit(message["duration"]) or time_limit
                    deadline = began + time_limit
                yield Info(float(message["duration"]), int(message.get("channels") or 1))
            elif kind == "segment":
                yield SegmentEvent(
                    float(message["start"]), float(message["end"]), str(message["text"]), message.get("speaker"),
                    message.get("avg_logprob"), message.get("no_speech_prob"), message.get("words"),
                )  # fmt: skip
            elif kind == "done":
                done = Done(
                    message.get("language"), message.get("language_probability"), message.get("rss_mb"),
                    message.get("speech_seconds"),
                )  # fmt: skip
                self._recycle_if_due(done.rss_mb)
                yield done
                return
            elif kind == "error":
                if message["kind"] == "permanent":
                    raise PermanentError(message["message"])
                raise RetryableError(message["message"])

    def _recycle_if_due(self, rss_mb: float | None) -> None:
        """Long-lived model processes grow; start a fresh one after N tasks or above a memory mark."""
        self.tasks_served += 1
        reason = None
        if self.max_tasks and self.tasks_served >= self.max_tasks:
            reason = f"{self.tasks_served} tasks served (WORKER_MAX_TASKS={self.max_tasks})"
        elif self.max_memory_mb and rss_mb is not None and rss_mb > self.max_memory_mb:
            reason = f"{rss_mb:.0f} MB resident (WORKER_MAX_MEMORY_MB={self.max_memory_mb})"
        if reason:
            log.info("recycling the model process: %s", reason)
            self.close()

    def kill(self) -> None:
        """Kill the child now; the next ``start`` loads a fresh one."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._reap()

    def close(self) -> None:
        """Stop the child politely (close its stdin), then kill it if it lingers."""
        if self._proc is None:
            return
        try:
            if self._proc.stdin:
                self._proc.stdin.close()
            self._proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
        self._reap()

    def _reap(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

    def _write(self, message: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except OSError as exc:
            raise WorkerLost(f"Worker lost: model process is gone ({exc})") from exc

    def _next(self, until: float) -> Any:
        try:
            return self._events.get(timeout=max(until - time.monotonic(), 0.0))
        except queue.Empty:
            return None

    @staticmethod
    def _pump(proc: subprocess.Popen[str], events: queue.Queue[Any]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                events.put(json.loads(line))
            except json.JSONDecodeError:
                log.debug("model process said: %s", line.rstrip())
        events.put(_EOF)
