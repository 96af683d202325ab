"""One transcription attempt, and the per-process resources it uses.

``WorkerContext`` holds what a worker process creates once, after any fork: the
database engine and the supervised model runner(s). ``run_attempt`` is the whole
attempt: claim, transcribe with heartbeats and saved progress, write outputs,
complete or fail. It knows nothing of Celery; the task is a thin shell around it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle
from transcriber.audio import (
    FileState,
    check_inside,
    check_same_audio,
    check_unchanged_since,
)
from transcriber.db import describe_error, make_engine, make_session_factory, transaction
from transcriber.errors import Interrupted, LeaseLost, RetryableError, TranscriberError
from transcriber.outputs import output_stem, write_outputs
from transcriber.retry import effective_time_limit
from transcriber.runner import (
    Done,
    Info,
    Request,
    Runner,
    SegmentEvent,
    SupervisedModel,
    decode_options,
    model_config_for,
)
from transcriber.settings import Settings
from transcriber.tables import AttemptOutcome, Recording, utcnow
from transcriber.transcripts import load_document

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """Resources of one worker process: built lazily in the process that uses them."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    runner_factory: Callable[[], Runner]
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{threading.get_native_id()}")
    _local: threading.local = field(default_factory=threading.local)
    stopping: threading.Event = field(default_factory=threading.Event)
    _runners: list[Runner] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, settings: Settings, *, name: str | None = None, concurrency: int = 1) -> WorkerContext:
        engine = make_engine(settings.database_url)
        config = model_config_for(settings, concurrency=concurrency)
        ctx = cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            runner_factory=lambda: SupervisedModel(
                config, max_tasks=settings.worker_max_tasks, max_memory_mb=settings.worker_max_memory_mb
            ),
        )
        if name:
            ctx.name = name
        return ctx

    def runner(self) -> Runner:
        """This thread's model runner (one per thread for the ``threads`` pool)."""
        runner = getattr(self._local, "runner", None)
        if runner is None:
            runner = self.runner_factory()
            self._local.runner = runner
            with self._lock:
                self._runners.append(runner)
        return runner

    def close(self) -> None:
        with self._lock:
            runners, self._runners = self._runners, []
        for runner in runners:
            runner.close()
        self.engine.dispose()


@dataclass(frozen=True)
class AttemptReport:
    """How one attempt ended: ``outcome`` is ``None`` when there was nothing to do."""

    recording_id: uuid.UUID
    outcome: AttemptOutcome | None
    status: str | None = None
    error: str | None = None

    def __str__(self) -> str:
        if self.outcome is None:
            return f"noop: {self.error or 'recording was not queued (duplicate or redelivered message)'}"
        text = f"{self.outcome.value}; recording {self.status}"
        return f"{text}: {self.error}" if self.error else text


def run_attempt(
    ctx: WorkerContext,
    recording_id: uuid.UUID,
    *,
    task_id: str | None,
    now: Callable[[], datetime] = utcnow,
    on_progress: Callable[[float, float | None], None] | None = None,
) -> AttemptReport:
    """Run one attempt for ``recording_id`` and report how it ended.

    A message for a recording that is not ``queued`` (a duplicate delivery, or one
    already taken) is a logged no-op.
    """
    runner = ctx.runner()
    if isinstance(runner, SupervisedModel):
        runner.start()  # load before the claim: loading is not the recording's time
    try:
        with transaction(ctx.sessions) as session:
            claim = lifecycle.claim_recording(
                session, recording_id=recording_id, task_id=task_id, worker=ctx.name, now=now()
            )
            holder = None if claim else session.execute(
                select(Recording.status, Recording.worker).where(Recording.id == recording_id)
            ).first()  # fmt: skip
    except OperationalError as exc:  # nothing was claimed: the recording stays queued and dispatch resends it
        why = f"database unavailable ({describe_error(exc)}); the recording stays queued and is sent again"
        log.warning("recording %s: %s", recording_id, why)
        return AttemptReport(recording_id, None, error=why)
    if claim is None:
        state = f"{holder[0]} on {holder[1]}" if holder and holder[0] == "processing" else (holder or ["gone"])[0]
        why = f"recording is {state}: duplicate or redelivered message {task_id} dropped"
        log.warning("recording %s: %s", recording_id, why)
        return AttemptReport(recording_id, None, error=why)
    log.info("recording %s attempt %d: %s from %.1fs", recording_id, claim.attempt, claim.file_name, claim.resume_from)
    try:
        before = _check_file(ctx, claim)
        result = _transcribe(ctx, runner, claim, now, on_progress)
        done = result.done
        assert done is not None
        check_unchanged_since(claim.file_path, before)
        _write_files(ctx, claim, done.language, result.duration)
        with transaction(ctx.sessions) as session:
            lifecycle.complete_recording(
                session, claim, now=now(), language=done.language, duration_seconds=result.duration,
                language_probability=done.language_probability, speech_seconds=done.speech_seconds,
                channels=result.channels,
            )  # fmt: skip
        log.info("recording %s completed", recording_id)
        return AttemptReport(recording_id, AttemptOutcome.SUCCEEDED, "completed")
    except LeaseLost as exc:
        log.warning("recording %s: %s; dropping this attempt's work", recording_id, exc)
        return AttemptReport(recording_id, AttemptOutcome.LOST, None, str(exc))
    except Interrupted:
        reason = "Interrupted: the worker shut down; the next attempt resumes where this one stopped"
        with transaction(ctx.sessions) as session:
            lifecycle.release_claim(session, claim, now=now(), reason=reason)
        log.warning("recording %s handed back to the queue: worker shutting down", recording_id)
        return AttemptReport(recording_id, AttemptOutcome.LOST, "queued", reason)
    except TranscriberError as exc:
        return _fail(ctx, claim, exc, now)
    except OperationalError as exc:  # the database went away mid-attempt
        return _fail(ctx, claim, RetryableError(f"Database error: {describe_error(exc)}"), now)
    except OSError as exc:
        return _fail(ctx, claim, RetryableError(f"I/O error: {exc}"), now)


def _check_file(ctx: WorkerContext, claim: lifecycle.Claim) -> FileState:
    """The file is under WATCH_DIR and still holds the audio that was registered."""
    check_inside(claim.file_path, ctx.settings.watch_dir)
    return check_same_audio(claim.file_path, size=claim.file_size, content_key=claim.content_sha256)


def _fail(
    ctx: WorkerContext, claim: lifecycle.Claim, error: BaseException, now: Callable[[], datetime]
) -> AttemptReport:
    log.warning("recording %s attempt %d failed: %s", claim.recording_id, claim.attempt, error)
    try:
        with transaction(ctx.sessions) as session:
            status = lifecycle.fail_attempt(
                session, claim, error=error, now=now(), policy=lifecycle.RetryPolicy.from_settings(ctx.settings)
            )
    except LeaseLost as exc:
        log.warning("recording %s: %s", claim.recording_id, exc)
        return AttemptReport(claim.recording_id, AttemptOutcome.LOST, None, str(exc))
    return AttemptReport(claim.recording_id, lifecycle.outcome_for(error), status.value, str(error))


class _Progress:
    """Segments produced but not yet saved, flushed with each heartbeat (fenced)."""

    def __init__(
        self,
        ctx: WorkerContext,
        claim: lifecycle.Claim,
        now: Callable[[], datetime],
        on_progress: Callable[[float, float | None], None] | None,
    ) -> None:
        self.ctx, self.claim, self.now, self.on_progress = ctx, claim, now, on_progress
        self.pending: list[lifecycle.SegmentData] = []
        self.next_idx = claim.next_segment_idx
        self.audio_done = claim.resume_from
        self.duration = claim.duration_seconds
        self.channels = 1
        self.done: Done | None = None
        self.last_flush = time.monotonic()

    def on_event(self, event: object, limit_for: Callable[[float | None], float | None]) -> bool:
        """Take one runner event; True when the transcription is done."""
        if isinstance(event, Info):
            self.duration = event.duration
            self.channels = event.channels
            with transaction(self.ctx.sessions) as session:
                lifecycle.set_attempt_plan(
                    session, self.claim, duration_seconds=event.duration, time_limit=limit_for(event.duration)
                )
        elif isinstance(event, SegmentEvent):
            words = json.dumps(event.words) if event.words else None
            self.pending.append(
                lifecycle.SegmentData(
                    event.start, event.end, event.text, event.speaker, event.avg_logprob, event.no_speech_prob, words
                )
            )
            self.audio_done = max(self.audio_done, event.end)
        elif isinstance(event, Done):
            self.audio_done = self.duration or self.audio_done
            self.flush()
            if self.pending:
                raise RetryableError("Database error: could not save the final segments")
            self.done = event
            return True
        return False

    def due(self) -> bool:
        return time.monotonic() - self.last_flush >= self.ctx.settings.heartbeat_seconds

    def flush(self) -> None:
        """Heartbeat and save; a database hiccup keeps the segments for the next try."""
        try:
            with transaction(self.ctx.sessions) as session:
                lifecycle.save_progress(
                    session,
                    self.claim,
                    now=self.now(),
                    first_idx=self.next_idx,
                    segments=self.pending,
                    progress_seconds=self.audio_done,
                )
        except OperationalError as exc:
            log.warning("heartbeat for %s failed, will retry: %s", self.claim.recording_id, describe_error(exc))
            return
        self.next_idx += len(self.pending)
        self.pending = []
        self.last_flush = time.monotonic()
        if self.on_progress is not None:
            self.on_progress(self.audio_done, self.duration)


def _transcribe(
    ctx: WorkerContext,
    runner: Runner,
    claim: lifecycle.Claim,
    now: Callable[[], datetime],
    on_progress: Callable[[float, float | None], None] | None,
) -> _Progress:
    settings = ctx.settings

    def limit_for(duration: float | None) -> float | None:
        return effective_time_limit(settings.task_timeout_seconds, settings.task_timeout_realtime_factor, duration)

    with transaction(ctx.sessions) as session:  # the limit is on the attempt row from its first second
        lifecycle.set_attempt_plan(
            session, claim, duration_seconds=claim.duration_seconds, time_limit=limit_for(claim.duration_seconds)
        )
    progress = _Progress(ctx, claim, now, on_progress)
    request = Request(claim.file_path, claim.resume_from, decode_options(settings))
    events = runner.transcribe(
        request, time_limit=limit_for(claim.duration_seconds), extend_limit=limit_for, tick=settings.heartbeat_seconds
    )
    try:
        for event in events:
            if progress.on_event(event, limit_for):
                return progress
            if progress.due():
                progress.flush()
            if ctx.stopping.is_set():
                raise Interrupted()
    except (LeaseLost, Interrupted) as exc:
        if isinstance(runner, SupervisedModel):
            runner.kill()  # it is still working for an attempt that no longer exists
        if isinstance(exc, Interrupted) and progress.pending:
            progress.flush()
        raise
    except RetryableError:
        if progress.pending:
            progress.flush()  # keep what this attempt did: the retry resumes after it
        raise
    raise RetryableError("model process ended the transcription without a result")


def _write_files(ctx: WorkerContext, claim: lifecycle.Claim, language: str | None, duration: float | None) -> None:
    """Write the output files before the recording is marked completed (a failure here is retried)."""
    settings = ctx.settings
    if not settings.formats:
        return
    with ctx.sessions() as session:
        recording = session.get(Recording, claim.recording_id)
        assert recording is not None
        doc = replace(load_document(session, recording, model=settings.whisper_model), language=language,
                      duration=duration)  # fmt: skip
    stem = output_stem(Path(settings.output_dir), Path(settings.watch_dir), claim.file_path)
    write_outputs(doc, stem, settings.formats)
