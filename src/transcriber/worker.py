"""One transcription attempt, and the per-process resources it uses.

``WorkerContext`` holds what a worker process creates once, after any fork: the
database engine and the supervised model runner(s). ``run_attempt`` is the whole
attempt: claim, transcribe with heartbeats and saved progress, write outputs,
complete or fail. It knows nothing of Celery; the task is a thin shell around it.

Its outermost frame is the boundary: whatever exception ends an attempt becomes
that attempt's outcome (``type: message``) in ``attempts`` and ``recordings``,
retried under the policy, so the database always says why.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle, maintenance, speakers
from transcriber.audio import FileState, check_inside, check_same_audio, check_unchanged_since
from transcriber.coverage import Gap, measure
from transcriber.db import describe_error, make_engine, make_session_factory, transaction
from transcriber.errors import Interrupted, LeaseLost, PermanentError, RetryableError, TranscriberError
from transcriber.outputs import output_stem, write_outputs
from transcriber.redact import redact_text
from transcriber.retry import effective_time_limit
from transcriber.runner import (
    Deadline,
    Diarizing,
    Done,
    Info,
    Pieces,
    Reached,
    Request,
    Runner,
    SupervisedModel,
    Turns,
    check_diarization,
    decode_options,
    diarize_option,
    model_config_for,
)
from transcriber.segments import Segment
from transcriber.settings import Settings
from transcriber.tables import AttemptOutcome, Recording, utcnow
from transcriber.transcripts import document, load_segments

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class WorkerContext:
    """Resources of one worker process: built lazily in the process that uses them."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    runner_factory: Callable[[], Runner]
    # Sends a task message (recording id, task id, file name, piece): the pieces of a call just cut go out at
    # once. ``None``: they wait for beat's dispatch.
    send: maintenance.SendTask | None = None
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{threading.get_native_id()}")
    _local: threading.local = field(default_factory=threading.local)
    stopping: threading.Event = field(default_factory=threading.Event)
    _runners: list[Runner] = field(default_factory=list)
    _spare: list[Runner] = field(default_factory=list)  # loaded ahead of the first task (``warm``)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        name: str | None = None,
        concurrency: int = 1,
        send: maintenance.SendTask | None = None,
    ) -> WorkerContext:
        check_diarization(settings)
        engine = make_engine(settings.database_url)
        config = model_config_for(settings, concurrency=concurrency)
        ctx = cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            runner_factory=lambda: SupervisedModel(
                config, max_tasks=settings.worker_max_tasks, max_memory_mb=settings.worker_max_memory_mb
            ),
            send=send,
        )
        if name:
            ctx.name = name
        return ctx

    def runner(self) -> Runner:
        """This thread's model runner (one per thread for the ``threads`` pool): a warmed-up one if any is left."""
        runner = getattr(self._local, "runner", None)
        if runner is None:
            with self._lock:
                runner = self._spare.pop() if self._spare else None
            if runner is None:
                runner = self.runner_factory()
                with self._lock:
                    self._runners.append(runner)
            self._local.runner = runner
        return runner

    def warm(self, count: int = 1) -> None:
        """Load ``count`` models now, in the background, so the first files find them loaded: the worker takes
        messages meanwhile, and a task that comes first waits for its model's load (never loads a second)."""

        def load(runner: Runner) -> None:
            try:
                runner.start()
            except Exception as exc:  # the first task reports it (and fails with the cause) when it loads again
                log.warning("could not load the model ahead of the first file: %s", exc)

        with self._lock:
            missing = count - len(self._runners)  # a task that came first made its own
        for _ in range(missing):
            runner = self.runner_factory()
            with self._lock:
                self._runners.append(runner)
                self._spare.append(runner)
            threading.Thread(target=load, args=(runner,), name="warm-model", daemon=True).start()

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


def as_attempt_error(exc: BaseException) -> TranscriberError:
    """Any exception that ended an attempt, as the error it is recorded with (pure).

    Our own errors carry their decision. The database going away and I/O errors may
    pass; a name the file system refuses cannot. Anything else is unexpected: it keeps
    its type and first line, and is retried under the policy.
    """
    if isinstance(exc, TranscriberError):
        return exc
    if isinstance(exc, OperationalError):
        return RetryableError(f"Database error: {describe_error(exc)}")
    if isinstance(exc, OSError):
        if exc.errno == errno.ENAMETOOLONG:
            return PermanentError(f"File name too long for this file system: {exc.filename or exc}")
        return RetryableError(f"I/O error: {exc}")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, Exception) and hasattr(exc, "orig"):  # an SQLAlchemy error: the driver's words
        lines = [describe_error(exc)]
    return RetryableError(redact_text(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__))


def run_attempt(
    ctx: WorkerContext,
    recording_id: uuid.UUID,
    *,
    task_id: str | None,
    now: Callable[[], datetime] = utcnow,
    on_progress: Callable[[float, float | None], None] | None = None,
    piece: int | None = None,
) -> AttemptReport:
    """Run one attempt for ``recording_id`` (or one ``piece`` of it) and report how it ended.

    A message for a recording that is not ``queued`` (a duplicate delivery, or one
    already taken) is a logged no-op.
    """
    if ctx.stopping.is_set():  # shutting down: load nothing, claim nothing; dispatch sends it to the next worker
        why = "worker shutting down: the recording stays queued and is sent again"
        log.info("recording %s: %s", recording_id, why)
        return AttemptReport(recording_id, None, error=why)
    runner = ctx.runner()
    runner.start()  # load before the claim: loading is not the recording's time
    try:
        with transaction(ctx.sessions) as session:
            if piece is None:
                claim = lifecycle.claim_recording(
                    session, recording_id=recording_id, task_id=task_id, worker=ctx.name, now=now()
                )
            else:
                claim = lifecycle.claim_piece(
                    session, recording_id=recording_id, piece=piece, task_id=task_id, worker=ctx.name, now=now()
                )
            holder = None if claim else session.execute(
                select(Recording.status, Recording.worker).where(Recording.id == recording_id)
            ).first()  # fmt: skip
            split = claim is None and piece is None and lifecycle.has_pieces(session, recording_id)
    except OperationalError as exc:  # nothing was claimed: the recording stays queued and dispatch resends it
        why = f"database unavailable ({describe_error(exc)}); the recording stays queued and is sent again"
        log.warning("recording %s: %s", recording_id, why)
        return AttemptReport(recording_id, None, error=why)
    if claim is None:
        state = f"{holder[0]} on {holder[1]}" if holder and holder[0] == "processing" else (holder or ["gone"])[0]
        what = "recording" if piece is None else f"piece {piece} of a recording that"
        why = f"{what} is {state}: duplicate or redelivered message {task_id} dropped"
        if split and holder and holder[0] == "processing":
            why = f"recording is {state}: its pieces are in flight or due later; message {task_id} has nothing to do"
        log.warning("recording %s: %s", recording_id, why)
        return AttemptReport(recording_id, None, error=why)
    log.info("recording %s attempt %d: %s%s from %.1fs", recording_id, claim.attempt, claim.file_name,
             "" if claim.piece is None else f" piece {claim.piece}", claim.resume_from)  # fmt: skip
    held = _Held(claim)
    try:
        try:
            return _attempt(ctx, runner, held, now, on_progress)
        except LeaseLost as exc:
            return _abandon(ctx, held.claim, exc, now)
        except Interrupted:
            return _release(ctx, held.claim, now)
        except Exception as exc:  # the boundary: whatever ended the attempt is its recorded cause
            return _fail(ctx, held.claim, as_attempt_error(exc), now)
    except OperationalError as exc:  # the database stayed away longer than STUCK_TIMEOUT_SECONDS
        why = f"database unavailable ({describe_error(exc)}); the stuck rescue requeues the recording"
        log.error("recording %s attempt %d: %s", recording_id, claim.attempt, why)
        return AttemptReport(recording_id, AttemptOutcome.LOST, None, why)
    except BaseException:  # a cold shutdown (SystemExit) mid-attempt: hand the recording back if we can
        with contextlib.suppress(Exception):
            _release(ctx, held.claim, now)
        raise


@dataclass
class _Held:
    """What this attempt holds now: the recording, then (once it cut the call) its piece 0, then the merge."""

    claim: lifecycle.Claim


def _attempt(
    ctx: WorkerContext,
    runner: Runner,
    held: _Held,
    now: Callable[[], datetime],
    on_progress: Callable[[float, float | None], None] | None,
) -> AttemptReport:
    claim = held.claim
    check_inside(claim.real_path, ctx.settings.watch_dir)
    before = check_same_audio(claim.real_path, size=claim.file_size, content_key=claim.content_sha256)
    if not claim.merge:
        progress = _transcribe(ctx, runner, held, now, on_progress)
        if held.claim.piece is None:
            _save_last(ctx, progress, before)
            _complete(ctx, held.claim, progress.finished(), now)
            log.info("recording %s completed", claim.recording_id)
            return AttemptReport(claim.recording_id, AttemptOutcome.SUCCEEDED, "completed")
        merge = _finish_piece(ctx, held.claim, progress, before, now)
        if merge is None:
            log.info("recording %s piece %d completed", claim.recording_id, held.claim.piece)
            return AttemptReport(claim.recording_id, AttemptOutcome.SUCCEEDED, "processing")
        held.claim = merge
    _merge(ctx, runner, held.claim, now)
    log.info("recording %s completed: its pieces merged", claim.recording_id)
    return AttemptReport(claim.recording_id, AttemptOutcome.SUCCEEDED, "completed")


def persist(ctx: WorkerContext, what: str, write: Callable[[Session], T]) -> T:
    """Run ``write`` in one transaction, retrying while the database is unreachable.

    A finished call's last segments, its completion and a failure's cause exist only
    in this process until they are written: they wait out a database restart (up to
    STUCK_TIMEOUT_SECONDS, the time after which the rescue would take the recording
    anyway) instead of being lost with the attempt.
    """
    give_up = time.monotonic() + ctx.settings.stuck_timeout_seconds
    delay = 0.5
    while True:
        try:
            with transaction(ctx.sessions) as session:
                return write(session)
        except OperationalError as exc:
            if time.monotonic() + delay > give_up or ctx.stopping.is_set():
                raise
            log.warning("%s: database unavailable (%s); trying again in %.1fs", what, describe_error(exc), delay)
            ctx.stopping.wait(delay)
            delay = min(delay * 2, 10.0)


@dataclass(frozen=True)
class Finished:
    """What a transcribed call found besides its segments: what its completion is measured and labelled by."""

    language: str | None
    language_probability: float | None
    speech: Sequence[Gap] | None  # the VAD's speech over the whole call (None: not measured)
    duration: float | None
    channels: int


def _save_last(ctx: WorkerContext, progress: _Progress, before: FileState) -> None:
    """Save the segments still pending, and make sure the file is what was decoded."""
    persist(ctx, f"recording {progress.claim.recording_id}: saving the last segments", progress.save)
    progress.saved()
    check_unchanged_since(progress.claim.real_path, before)


def _complete(ctx: WorkerContext, claim: lifecycle.Claim, done: Finished, now: Callable[[], datetime]) -> None:
    """Write the files and mark the recording completed, from one read of its segments."""
    settings = ctx.settings

    def write(session: Session) -> None:
        lifecycle.save_progress(
            session, claim, now=now(), first_idx=0, segments=[], progress_seconds=done.duration
        )  # fenced: the row is ours until commit
        recording = session.get(Recording, claim.recording_id)
        assert recording is not None
        call = speakers.of_call(
            speakers.Diarization.loads(recording.speaker_turns), recording.speaker_error,
            [(g.start, g.end, g.speaker) for g in done.speech or ()], done.duration or 0.0,
            configured=settings.diarize_names, max_speakers=settings.diarize_max_speakers, side_names=settings.speakers,
        )  # fmt: skip
        if call.labeller is not None:
            segments = lifecycle.label_speakers(session, claim, call.labeller)
        else:
            segments = load_segments(session, claim.recording_id)
        measured = measure(done.speech, segments) if done.speech is not None else None
        if settings.formats:
            doc = document(recording, segments, model=settings.whisper_model, language=done.language,
                           duration=done.duration, coverage=measured, speakers=call.figures)  # fmt: skip
            write_outputs(doc, output_stem(Path(settings.output_dir), Path(settings.watch_dir), claim.file_path),
                          settings.formats, redact=settings.redact, region=settings.phone_region)  # fmt: skip
        lifecycle.complete_recording(
            session, claim, now=now(), segments=segments, language=done.language,
            duration_seconds=done.duration, language_probability=done.language_probability,
            coverage=measured, channels=done.channels, speaker_stats=call.figures, speaker_review=call.review,
            notify=settings.webhooks_enabled,
        )  # fmt: skip

    persist(ctx, f"recording {claim.recording_id}: completing", write)


def _finish_piece(
    ctx: WorkerContext, claim: lifecycle.Claim, progress: _Progress, before: FileState, now: Callable[[], datetime]
) -> lifecycle.Claim | None:
    """Save a finished piece; returns the merge claim when it was the call's last piece."""
    done = progress.done
    assert done is not None
    _save_last(ctx, progress, before)
    return persist(
        ctx,
        f"recording {claim.recording_id}: completing piece {claim.piece}",
        lambda session: lifecycle.complete_piece(session, claim, now=now(), speech=done.speech or (),
                                                 language=done.language,
                                                 language_probability=done.language_probability),
    )  # fmt: skip


def _merge(ctx: WorkerContext, runner: Runner, claim: lifecycle.Claim, now: Callable[[], datetime]) -> None:
    """Complete a split call from its pieces: one transcript in time order, measured over the whole call, and
    for a mono call one set of speaker turns found over all of it."""
    speech, language, probability = persist(
        ctx,
        f"recording {claim.recording_id}: reading its pieces",
        lambda session: lifecycle.merged_pieces(session, claim.recording_id),
    )
    mono = claim.split_channels != "split"
    diarize = diarize_option(ctx.settings) if mono else None
    wanted = diarize is not None and persist(
        ctx, f"recording {claim.recording_id}: reading its turns", lambda session: _turns_wanted(session, claim)
    )
    if wanted:  # the whole call is decoded for this (the pieces never hold it all): see README's limits
        request = Request(claim.real_path, options=decode_options(ctx.settings), diarize=diarize, turns_only=True)
        _run(ctx, runner, _Progress(ctx, _Held(claim), _deadline(ctx, claim), now, None), request)
    _complete(ctx, claim, Finished(language, probability, speech, claim.duration_seconds, 1 if mono else 2), now)


def _fail(
    ctx: WorkerContext, claim: lifecycle.Claim, error: TranscriberError, now: Callable[[], datetime]
) -> AttemptReport:
    log.warning("recording %s attempt %d failed: %s", claim.recording_id, claim.attempt, error)
    policy = lifecycle.RetryPolicy.from_settings(ctx.settings)
    try:
        status = persist(
            ctx,
            f"recording {claim.recording_id}: recording the failure",
            lambda session: lifecycle.fail_attempt(
                session, claim, error=error, now=now(), policy=policy, notify=ctx.settings.webhooks_enabled
            ),
        )
    except LeaseLost as exc:
        return _abandon(ctx, claim, exc, now)
    return AttemptReport(claim.recording_id, lifecycle.outcome_for(error), status.value, str(error))


def _abandon(ctx: WorkerContext, claim: lifecycle.Claim, exc: LeaseLost, now: Callable[[], datetime]) -> AttemptReport:
    """The recording was taken from this attempt (skip, reset, SQL, rescue): close the attempt, write nothing else."""
    reason = str(exc)
    with contextlib.suppress(OperationalError):  # the rescue closes it too if the database is away now
        reason = persist(ctx, "closing a lost attempt", lambda s: lifecycle.abandon_attempt(s, claim, now=now()))
    log.warning("recording %s: %s; this attempt's work is dropped", claim.recording_id, reason)
    return AttemptReport(claim.recording_id, AttemptOutcome.LOST, None, reason)


def _release(ctx: WorkerContext, claim: lifecycle.Claim, now: Callable[[], datetime]) -> AttemptReport:
    reason = "Interrupted: the worker shut down; the next attempt resumes where this one stopped"
    try:
        with transaction(ctx.sessions) as session:
            lifecycle.release_claim(session, claim, now=now(), reason=reason)
    except LeaseLost as exc:
        return _abandon(ctx, claim, exc, now)
    log.warning("recording %s handed back to the queue: worker shutting down", claim.recording_id)
    return AttemptReport(claim.recording_id, AttemptOutcome.LOST, "queued", reason)


class _Progress:
    """What the attempt has heard but not yet saved, written with each heartbeat (fenced)."""

    def __init__(
        self,
        ctx: WorkerContext,
        held: _Held,
        deadline: Deadline,
        now: Callable[[], datetime],
        on_progress: Callable[[float, float | None], None] | None,
    ) -> None:
        self.ctx, self.held, self.deadline, self.now, self.on_progress = ctx, held, deadline, now, on_progress
        claim = held.claim
        self.pending: list[Segment] = []
        self.next_idx = claim.next_segment_idx
        self.audio_done = claim.resume_from
        self.duration = claim.duration_seconds
        self.channels = 1
        self.plan_unsaved = True  # the duration and limit go on the rows with the next heartbeat
        self.done: Done | None = None
        self.diarizing = False  # between the model's "diarizing" and its turns
        self.last_flush = time.monotonic()

    @property
    def claim(self) -> lifecycle.Claim:
        return self.held.claim

    def on_event(self, event: object) -> bool:
        """Take one runner event; True when the transcription is done."""
        if isinstance(event, Info):
            self.duration, self.channels = event.duration, event.channels
            self.deadline.plan(_audio_of(self.claim, event.duration))
            self.plan_unsaved = True
            self.flush()
        elif isinstance(event, Pieces):
            self.cut(event)
        elif isinstance(event, Segment):
            self.pending.append(event)
            self.audio_done = max(self.audio_done, event.end)
        elif isinstance(event, Reached):
            self.audio_done = max(self.audio_done, event.seconds)
            self.flush()  # the next attempt starts here even if no word was heard
        elif isinstance(event, Diarizing):
            self.diarizing = True
            self.flush()  # what was decoded is saved before the turns are looked for
        elif isinstance(event, Turns):
            self.diarizing = False
            if event.error:
                log.warning("recording %s: no speaker turns: %s", self.claim.recording_id, event.error)
            self.keep_turns(event.found, event.error)
        elif isinstance(event, Done):
            self.audio_done = self.claim.audio_end or self.duration or self.audio_done
            self.done = event
            return True
        return False

    def cut(self, pieces: Pieces) -> None:
        """The model process cut the call: store the pieces (this attempt keeps piece 0) and send the others."""
        rid = self.claim.recording_id
        self.held.claim = persist(
            self.ctx,
            f"recording {rid}: cutting it into pieces",
            lambda session: lifecycle.plan_pieces(
                session,
                self.claim,
                cuts=pieces.cuts,
                duration=pieces.duration,
                channels=pieces.channels,
                now=self.now(),
            ),
        )
        self.next_idx, self.audio_done, self.duration = 0, 0.0, pieces.duration  # fmt: skip
        self.deadline.plan(_audio_of(self.claim, pieces.duration))
        self.plan_unsaved = True
        if self.ctx.send is not None:
            try:
                maintenance.dispatch_pieces(self.ctx.sessions, rid, send=self.ctx.send, now=self.now())
            except Exception as exc:  # beat's dispatch sends them instead; this piece goes on
                log.warning("recording %s: could not send its pieces now (%s); dispatch will", rid, exc)

    def finished(self) -> Finished:
        done = self.done
        assert done is not None
        return Finished(done.language, done.language_probability, done.speech, self.duration, self.channels)

    def keep_turns(self, found: speakers.Diarization | None, error: str | None) -> None:
        """Store the speaker turns (or why there are none) now: no later attempt looks for them again."""
        persist(self.ctx, f"recording {self.claim.recording_id}: saving its speaker turns",
                lambda session: lifecycle.save_speaker_turns(session, self.claim, now=self.now(), found=found,
                                                             error=error))  # fmt: skip

    def due(self) -> bool:
        return time.monotonic() - self.last_flush >= self.ctx.settings.heartbeat_seconds

    def save(self, session: Session) -> None:
        """Heartbeat, and save the plan and the segments heard since the last save (fenced)."""
        if self.plan_unsaved:
            lifecycle.set_attempt_plan(session, self.claim, duration_seconds=self.duration,
                                       time_limit=self.deadline.seconds)  # fmt: skip
        lifecycle.save_progress(session, self.claim, now=self.now(), first_idx=self.next_idx, segments=self.pending,
                                progress_seconds=self.audio_done)  # fmt: skip

    def saved(self) -> None:
        """Call once the transaction of ``save`` has committed."""
        self.next_idx += len(self.pending)
        self.pending = []
        self.plan_unsaved = False
        self.last_flush = time.monotonic()
        if self.on_progress is not None:
            try:
                self.on_progress(self.audio_done, self.duration)
            except Exception as exc:  # progress is for people watching; a broker blip must not end the attempt
                log.warning("could not report progress of %s: %s", self.claim.recording_id, type(exc).__name__)

    def flush(self) -> None:
        """A heartbeat; a database hiccup keeps what is pending for the next one."""
        try:
            with transaction(self.ctx.sessions) as session:
                self.save(session)
        except OperationalError as exc:
            log.warning("heartbeat for %s failed, will retry: %s", self.claim.recording_id, describe_error(exc))
            self.last_flush = time.monotonic()
            return
        self.saved()


FIRST_PIECE_SECONDS = 30.0  # one Whisper window: halved for each attempt in a row that timed out where it began
MIN_FIRST_PIECE_SECONDS = 2.0


def _resume_state(session: Session, claim: lifecycle.Claim) -> tuple[list[Segment], float | None, bool]:
    """What earlier attempts saved (their time counts as covered), the first piece to decode alone, and
    whether speaker turns are still to be found (none stored, and no earlier attempt failed at them).

    An attempt that timed out before it decoded anything would start where it began
    forever; each such attempt in a row halves the first piece, so one finishes in time.
    """
    previous = load_segments(session, claim.recording_id) if claim.resume_from or claim.next_segment_idx else []
    wanted = _turns_wanted(session, claim)
    stalled = lifecycle.timeouts_without_progress(session, claim)
    if not stalled:
        return previous, None, wanted
    return previous, max(FIRST_PIECE_SECONDS / 2**stalled, MIN_FIRST_PIECE_SECONDS), wanted


def _audio_of(claim: lifecycle.Claim, duration: float | None) -> float | None:
    """The audio one attempt is sized for: its piece, or the whole call."""
    if claim.piece is None or claim.piece_end is None:
        return duration
    return claim.piece_end - claim.piece_start


def _deadline(ctx: WorkerContext, claim: lifecycle.Claim) -> Deadline:
    settings = ctx.settings

    def limit_for(duration: float | None) -> float | None:
        return effective_time_limit(settings.task_timeout_seconds, settings.task_timeout_realtime_factor, duration)

    return Deadline(limit_for, _audio_of(claim, claim.duration_seconds))


def _request(ctx: WorkerContext, claim: lifecycle.Claim, previous: list[Segment], first_piece: float | None,
             turns_wanted: bool) -> Request:  # fmt: skip
    """What the model process is asked for this attempt: a piece, or the call (cut first when it is long)."""
    settings = ctx.settings
    options = decode_options(settings)
    if claim.piece is not None:
        if claim.split_channels != "split" and diarize_option(settings) is not None:
            options["word_timestamps"] = True  # the merge gives the call's speaker turns to words by their times
        end = claim.piece_end or claim.piece_start
        mine = tuple(s for s in previous if s.end > claim.piece_start and s.start < end)
        return Request(claim.real_path, claim.resume_from, options, mine, first_piece, None,
                       piece=(claim.piece_start, end), split_channels=claim.split_channels,
                       duration=claim.duration_seconds)  # fmt: skip
    diarize = diarize_option(settings)
    if diarize is not None:
        diarize["find"] = turns_wanted
    long_call = (claim.duration_seconds or 0.0) > settings.split_min_seconds > 0
    fresh = not claim.resume_from and not claim.next_segment_idx
    split = {"min": settings.split_min_seconds, "target": settings.split_target_seconds}
    return Request(claim.real_path, claim.resume_from, options, tuple(previous), first_piece, diarize,
                   split=split if long_call and fresh else None)  # fmt: skip


def _turns_wanted(session: Session, claim: lifecycle.Claim) -> bool:
    """No speaker turns stored yet, and no earlier attempt failed at finding them."""
    turns, error = session.execute(
        select(Recording.speaker_turns, Recording.speaker_error).where(Recording.id == claim.recording_id)
    ).one()
    return turns is None and error is None


def _transcribe(
    ctx: WorkerContext,
    runner: Runner,
    held: _Held,
    now: Callable[[], datetime],
    on_progress: Callable[[float, float | None], None] | None,
) -> _Progress:
    claim = held.claim
    progress = _Progress(ctx, held, _deadline(ctx, claim), now, on_progress)
    progress.flush()  # the limit is on the attempt row from its first second
    previous, first_piece, turns_wanted = persist(ctx, f"recording {claim.recording_id}: reading its progress",
                                                  lambda session: _resume_state(session, claim))  # fmt: skip
    return _run(ctx, runner, progress, _request(ctx, claim, previous, first_piece, turns_wanted))


def _run(ctx: WorkerContext, runner: Runner, progress: _Progress, request: Request) -> _Progress:
    """Feed one request's events to ``progress`` until the model process is done, heartbeating as it goes."""
    try:
        with contextlib.closing(
            runner.transcribe(request, deadline=progress.deadline, tick=ctx.settings.heartbeat_seconds)
        ) as events:
            for event in events:
                if progress.on_event(event):
                    return progress
                if progress.due():
                    progress.flush()
                if ctx.stopping.is_set():
                    raise Interrupted()
    except (RetryableError, Interrupted) as exc:
        if progress.pending:
            progress.flush()  # keep what this attempt heard: the next attempt resumes after it
        if progress.diarizing and not isinstance(exc, Interrupted):
            # The transcript is done; the turns cost this attempt (timeout, crash). The next one goes on without.
            progress.keep_turns(None, f"diarization stopped: {exc}")
        raise
    raise RetryableError("model process ended the transcription without a result")
