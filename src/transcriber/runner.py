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
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from transcriber.coverage import Gap
from transcriber.errors import AttemptTimeout, ConfigError, ModelNotFound, PermanentError, RetryableError, WorkerLost
from transcriber.model_store import resolve_model
from transcriber.segments import Segment
from transcriber.settings import Settings
from transcriber.speakers import Diarization

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


# More model processes than this on one machine hold that many models in memory for little more speed; above
# it the cores are shared out as threads (measured only up to 2 cores: see BENCHMARKS.md "Layouts").
MAX_DEFAULT_PROCESSES = 8


def default_concurrency(device: str, cores: int | None = None) -> int:
    """How many model processes ``transcriber worker`` runs when ``--concurrency`` is not given.

    On CPU, one per core with one thread each, up to ``MAX_DEFAULT_PROCESSES``: on 2 cores two 1-thread
    processes decode 2.0-2.1x what one 2-thread process does (bench/layouts.py), because CTranslate2's
    threads inside one decode keep each other waiting while separate processes never do, and a split call's
    pieces keep them all busy. On a GPU, one process per GPU: one model on the device, fed by the batched
    pipeline (WHISPER_BATCH_SIZE), is the measured way to fill it (bench/gpu.sh).
    """
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if device == "cuda":
        return 1
    return max(1, min(cores if cores is not None else (os.cpu_count() or 1), MAX_DEFAULT_PROCESSES))


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
        "repair": settings.whisper_repair,
        "multilingual": settings.whisper_multilingual and not settings.whisper_language,
        "channels": settings.channels,
        "speakers": list(settings.speakers),
    }


def diarize_option(settings: Settings) -> dict[str, object] | None:
    """What the model process needs to find speaker turns on a mono call, or ``None`` (``DIARIZE``).

    ``auto`` diarizes when the ``speakers`` extra is installed; ``on`` requires it (checked at
    start-up by ``check_diarization``); two-channel calls keep their sides whatever this says.
    """
    from transcriber.diarization import unavailable

    if settings.diarize == "off" or (settings.diarize == "auto" and unavailable()):
        return None
    return {"max_speakers": settings.diarize_max_speakers}


def check_diarization(settings: Settings) -> None:
    """``DIARIZE=on`` without the extra is a configuration mistake: one line, before any work."""
    from transcriber.diarization import unavailable

    reason = unavailable() if settings.diarize == "on" else None
    if reason:
        raise ConfigError(f"DIARIZE=on, but {reason} (or set DIARIZE=auto to go on without speaker turns)")


@dataclass(frozen=True)
class Info:
    duration: float
    channels: int = 1


@dataclass(frozen=True)
class Done:
    language: str | None
    language_probability: float | None
    rss_mb: float | None = None
    speech: tuple[Gap, ...] | None = None  # the speech VAD heard on each side, over the whole call
    repaired: int = 0  # segments the repair recovered


@dataclass(frozen=True)
class Reached:
    """Decoded up to ``seconds`` (whether or not it held words): the next attempt may start here."""

    seconds: float


@dataclass(frozen=True)
class Diarizing:
    """The transcript is decoded; the speaker turns are being found."""


@dataclass(frozen=True)
class Turns:
    """Speaker turns of a mono call (``found``), or why there are none (``error``)."""

    found: Diarization | None = None
    error: str | None = None


@dataclass(frozen=True)
class Pieces:
    """The call was cut at ``cuts`` (splitting.plan_pieces); what follows is piece 0's."""

    cuts: tuple[float, ...]
    duration: float
    channels: str  # how every piece takes the channels: "mono" or "split"


@dataclass(frozen=True)
class Tick:
    """Nothing new for a while: a chance to heartbeat."""


Event = Info | Segment | Reached | Diarizing | Turns | Done | Pieces | Tick
Events = Generator[Event, None, None]


@dataclass(frozen=True)
class Request:
    path: str
    start: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    previous: tuple[Segment, ...] = ()  # segments earlier attempts saved: their time is covered
    first_piece: float | None = None  # decode this many seconds on their own first (short limits)
    # Speaker turns of a mono call (``diarize_option``): words keep their times; "find": look for the turns
    # after decoding (false when an earlier attempt stored them).
    diarize: dict[str, Any] | None = None
    # A long call not yet cut: {"min": s, "target": s}; the model process cuts it when it is longer than "min"
    # (a ``Pieces`` event), then decodes piece 0.
    split: dict[str, float] | None = None
    # One piece of a split call: only its audio ``(start, end)`` is decoded, its channels taken as the plan
    # says ("mono" or "split"); ``duration`` is the whole call's.
    piece: tuple[float, float] | None = None
    split_channels: str | None = None
    duration: float | None = None
    turns_only: bool = False  # only find the speaker turns of the whole call (the merge of a split mono call)

    def to_wire(self, request_id: str) -> dict[str, Any]:
        return {
            "type": "transcribe",
            "id": request_id,
            "path": self.path,
            "start": self.start,
            "options": self.options,
            "previous": [[s.start, s.end, s.speaker] for s in self.previous if s.text.strip()],
            "first_piece": self.first_piece,
            "diarize": self.diarize,
            "split": self.split,
            "piece": list(self.piece) if self.piece else None,
            "split_channels": self.split_channels,
            "duration": self.duration,
            "turns_only": self.turns_only,
        }


class Deadline:
    """When an attempt must end, derived in one place from its time limit and the audio's duration.

    ``limit_for(duration)`` is the attempt's limit in seconds (``None``: no limit); the
    clock starts when the deadline is made (the claim). ``plan`` recomputes it once the
    model process has measured the duration (duration-aware limits).
    """

    def __init__(
        self,
        limit_for: Callable[[float | None], float | None],
        duration: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit_for = limit_for
        self._clock = clock
        self.began = clock()
        self.seconds = limit_for(duration)

    def plan(self, duration: float | None) -> float | None:
        """The limit for audio of ``duration`` seconds, from now on; returns it."""
        self.seconds = self._limit_for(duration) or self.seconds
        return self.seconds

    def remaining(self) -> float | None:
        return None if self.seconds is None else self.began + self.seconds - self._clock()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0


class Runner(Protocol):
    """What the worker needs of a model runner.

    ``transcribe`` yields the events of one request. A consumer that stops early must
    close the iterator (``contextlib.closing``): the runner then ends that request
    (kills its model process), so the next request never reads the old one's events.
    """

    def start(self) -> None:
        """Load the model now (not counted in any attempt's time)."""

    def transcribe(self, request: Request, *, deadline: Deadline | None, tick: float = 5.0) -> Events: ...

    def close(self) -> None: ...


def _event(message: dict[str, Any]) -> Event | None:
    """A model-process reply (other than ``error``) as the event it stands for."""
    kind = message["type"]
    if kind == "info":
        return Info(float(message["duration"]), int(message.get("channels") or 1))
    if kind == "segment":
        return Segment.from_wire(message)
    if kind == "reached":
        return Reached(float(message["seconds"]))
    if kind == "diarizing":
        return Diarizing()
    if kind == "pieces":
        return Pieces(tuple(float(c) for c in message["cuts"]), float(message["duration"]), str(message["channels"]))
    if kind == "turns":
        if message.get("error"):
            return Turns(error=str(message["error"]))
        return Turns(Diarization.from_json(message))
    if kind == "done":
        speech = message.get("speech")
        return Done(
            message.get("language"),
            message.get("language_probability"),
            message.get("rss_mb"),
            None if speech is None else tuple(Gap(float(a), float(b), who) for a, b, who in speech),
            int(message.get("repaired") or 0),
        )
    log.debug("model process sent an unknown reply: %s", kind)
    return None


class SupervisedModel:
    """Parent side of ``transcriber.model_process``."""

    def __init__(
        self,
        config: ModelConfig,
        *,
        load_timeout: float = 900.0,
        max_tasks: int = 0,
        max_memory_mb: int = 0,
        command: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        # The child's command line; tests put a stand-in speaking the same protocol here.
        self.command = list(command or [sys.executable, "-m", "transcriber.model_process"])
        self.load_timeout = load_timeout
        self.max_tasks = max_tasks
        self.max_memory_mb = max_memory_mb
        self.tasks_served = 0
        self.load_seconds: float | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._events: queue.Queue[Any] = queue.Queue()
        self._starting = threading.Lock()  # a warm-up in the background and the first task wait for one load

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the child and wait until its model is loaded (not counted in any time limit)."""
        with self._starting:
            self._start()

    def _start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._events = queue.Queue()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        creationflags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        self._proc = subprocess.Popen(
            self.command,
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
        if message is _EOF and (code := self._reap()) is not None and code < 0:
            # Killed by a signal while loading (the OOM killer, an operator): the machine's trouble, not the
            # model's, so the attempt is retried. A model that cannot load says so, or exits by itself: for good.
            raise WorkerLost(f"Worker lost: model process exited with code {code} while loading the model")
        if message is _EOF or message is None or message.get("type") != "ready":
            detail = message.get("message") if isinstance(message, dict) else "the model process exited"
            self.kill()
            raise ModelNotFound(f"Could not load Whisper model {self.config.model!r}: {detail}")
        self.load_seconds = float(message["load_seconds"])
        self.tasks_served = 0
        log.info("model %s loaded in %.1fs (pid %s)", self.config.model, self.load_seconds, self._proc.pid)

    def transcribe(self, request: Request, *, deadline: Deadline | None, tick: float = 5.0) -> Events:
        """Yield events of one transcription; kill the child at the deadline.

        Every request carries an id and replies for any other id are dropped. If the
        request does not run to its ``done`` or ``error`` (the consumer stopped early,
        closed the iterator, or anything raised), the child is killed in ``finally``:
        it may still be talking about this request, and the next one must start clean.
        Raises ``AttemptTimeout``, ``WorkerLost`` (the child died), ``PermanentError``
        or ``RetryableError``.
        """
        self.start()
        request_id = uuid.uuid4().hex
        finished = False
        try:
            self._write(request.to_wire(request_id))
            while True:
                wait_until = time.monotonic() + tick
                left = deadline.remaining() if deadline is not None else None
                if left is not None:
                    wait_until = min(wait_until, time.monotonic() + max(left, 0.0))
                message = self._next(wait_until)
                if message is None:
                    if deadline is not None and deadline.expired():
                        raise AttemptTimeout(deadline.seconds or 0)
                    yield Tick()
                    continue
                if message is _EOF:
                    code = self._reap()
                    raise WorkerLost(f"Worker lost: model process exited with code {code}")
                if message.get("id") != request_id:
                    log.warning("dropped a model-process reply for another request (%s)", message.get("type"))
                    continue
                if message["type"] == "error":
                    finished = True
                    if message["kind"] == "permanent":
                        raise PermanentError(message["message"])
                    raise RetryableError(message["message"])
                event = _event(message)
                if isinstance(event, Done):
                    finished = True
                    self._recycle_if_due(event.rss_mb)
                    yield event
                    return
                if event is not None:
                    yield event
        finally:
            if not finished:
                self.kill()  # it may still be working on this request: the next one starts with a fresh process

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
