"""``transcriber doctor``: a pre-flight check an operator runs after any change.

Each check is a plain function returning a ``Check``; the CLI prints them and exits
non-zero when one failed. The time-limit check compares TASK_TIMEOUT_SECONDS with
the speed measured on recent recordings: the incident behind this project (a
30-minute limit against 60-minute calls) is caught before the first failed run.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from transcriber.errors import TranscriberError
from transcriber.maintenance import BeatTick, live_beats
from transcriber.redact import redact_url
from transcriber.retry import effective_time_limit, visibility_timeout_for
from transcriber.settings import Settings
from transcriber.tables import Recording, RecordingStatus, ServiceRun

OK, WARN, FAIL = "ok", "warn", "fail"
SAFETY_MARGIN = 1.5  # a limit should leave room for a slower machine or a busier hour


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def limit_advice(*, timeout_seconds: int, realtime_factor: float, durations: list[float], speeds: list[float]) -> Check:
    """Pure: would recordings of these durations finish within the limit at the measured speed?"""
    if not speeds:
        return Check("time limit", OK, "no completed recordings yet to measure speed; run doctor again later")
    speed = statistics.quantiles(speeds, n=10)[-1] if len(speeds) >= 10 else max(speeds)  # a slow-ish run
    if not durations:
        return Check("time limit", OK, f"speed {speed:.2f} s of work per s of audio; nothing waiting")

    def needed(duration: float) -> float:  # one rule for the verdict, the count and the advice
        return duration * speed * SAFETY_MARGIN

    def short(duration: float) -> bool:
        limit = effective_time_limit(timeout_seconds, realtime_factor, duration)
        return limit is not None and limit < needed(duration)

    too_long = [d for d in durations if short(d)]
    if not too_long:
        longest = max(durations)
        limit = effective_time_limit(timeout_seconds, realtime_factor, longest)
        shown = "no limit" if limit is None else f"{limit:.0f}s"
        return Check(
            "time limit", OK, f"longest waiting {longest / 60:.1f} min needs ~{needed(longest):.0f}s; limit {shown}"
        )
    worst = max(too_long)
    return Check(
        "time limit",
        FAIL,
        f"{len(too_long)} queued/failed recording(s) cannot finish in one attempt: the longest ({worst / 60:.1f} min) "
        f"needs ~{needed(worst):.0f}s at {speed:.2f} s/s x {SAFETY_MARGIN} margin, "
        f"TASK_TIMEOUT_SECONDS={timeout_seconds}; set TASK_TIMEOUT_SECONDS={math.ceil(needed(worst) / 60) * 60} or "
        f"TASK_TIMEOUT_REALTIME_FACTOR={math.ceil(speed * SAFETY_MARGIN * 10) / 10}",
    )


def visibility_advice(*, override: int, timeout_seconds: int, realtime_factor: float) -> Check:
    """Pure: will Redis hand a running call to a second worker before the attempt can end?"""
    derived = visibility_timeout_for(timeout_seconds, realtime_factor)
    if not override:
        return Check("redelivery", OK, f"visibility timeout {derived}s (derived), above any attempt")
    unbounded = timeout_seconds <= 0 or realtime_factor > 0
    if unbounded or override < timeout_seconds:
        longest = "has no fixed limit" if unbounded else f"may run {timeout_seconds}s"
        return Check(
            "redelivery",
            WARN,
            f"BROKER_VISIBILITY_TIMEOUT_SECONDS={override} but an attempt {longest}: Redis will hand running calls "
            f"to other workers, which drop them (harmless, but noise); set it to 0 (derived: {derived}s)",
        )
    return Check("redelivery", OK, f"visibility timeout {override}s (set), above the {timeout_seconds}s limit")


def check_time_limit(settings: Settings, sessions: sessionmaker[Session]) -> Check:
    with sessions() as session:
        speeds = list(
            session.scalars(
                select(Recording.work_seconds_per_audio_second)
                .where(Recording.work_seconds_per_audio_second.is_not(None))
                .order_by(Recording.finished_at.desc())
                .limit(50)
            )
        )
        durations = list(
            session.scalars(
                select(Recording.duration_seconds).where(
                    Recording.status.in_([RecordingStatus.QUEUED.value, RecordingStatus.FAILED.value]),
                    Recording.duration_seconds.is_not(None),
                )
            )
        )
    return limit_advice(
        timeout_seconds=settings.task_timeout_seconds,
        realtime_factor=settings.task_timeout_realtime_factor,
        durations=[attempt_audio(float(d), settings) for d in durations if d is not None],
        speeds=[float(s) for s in speeds if s],
    )


def attempt_audio(duration: float, settings: Settings) -> float:
    """The most audio one attempt of a call of ``duration`` seconds decodes: a call longer than
    SPLIT_MIN_SECONDS is cut into pieces of about SPLIT_TARGET_SECONDS (at most 1.5x it: the cut moves to a
    silence, and a short tail joins the piece before), so a time limit is sized for a piece, not the call."""
    if settings.split_min_seconds and duration > settings.split_min_seconds:
        return min(duration, 1.5 * settings.split_target_seconds)
    return duration


def layout_advice(*, cores: int, device: str, cpu_threads: int, split_min_seconds: float) -> Check:
    """Pure: how ``transcriber worker`` lays out model processes and threads here, and what to change."""
    from transcriber.runner import default_concurrency

    processes = default_concurrency(device, cores)
    if device == "cuda":
        gpu = "GPU: one model process per GPU (one worker per GPU, --concurrency=1), fed in batches: set "
        return Check("layout", OK, gpu + "WHISPER_BATCH_SIZE=16 (bench/gpu.sh measures the layouts on yours)")
    threads = cpu_threads or max(1, cores // processes)
    detail = (
        f"{cores} cores: `transcriber worker` runs {processes} model process(es) x {threads} thread(s) by default; "
        "on 2 cores 2 x 1 thread decodes 2.0x what 1 x 2 threads does (bench/layouts.py)"
    )
    if threads * processes > cores:
        return Check("layout", WARN, f"{detail}, but WHISPER_CPU_THREADS={cpu_threads} gives {threads * processes} "
                     f"threads on {cores} cores: they fight for them; set WHISPER_CPU_THREADS=0")  # fmt: skip
    if not split_min_seconds:
        return Check("layout", WARN, f"{detail}; SPLIT_MIN_SECONDS=0: a long call runs on one process however "
                     "many are free (set it to 600 to cut long calls into pieces)")  # fmt: skip
    return Check("layout", OK, detail)


def check_layout(settings: Settings) -> Check:
    device = settings.whisper_device
    if device == "auto":
        from transcriber.runner import cuda_available

        device = "cuda" if cuda_available() else "cpu"
    return layout_advice(cores=os.cpu_count() or 1, device=device, cpu_threads=settings.whisper_cpu_threads,
                         split_min_seconds=settings.split_min_seconds)  # fmt: skip


def check_database(settings: Settings, sessions: sessionmaker[Session]) -> Check:
    from alembic.script import ScriptDirectory

    from transcriber.migrate import alembic_config, current_revision

    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    engine = sessions.kw["bind"]
    current = current_revision(engine)
    where = redact_url(settings.database_url)
    if current != head:
        return Check(
            "database", FAIL, f"{where} is at {current or 'no schema'}, not {head}: run 'transcriber db upgrade'"
        )
    return Check("database", OK, f"{where} reachable, schema at head ({head})")


def check_broker(settings: Settings) -> Check:
    from transcriber.celery_app import app, use_settings

    use_settings(settings)
    where = redact_url(settings.celery_broker_url)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:  # kombu wraps some errors, not all (a TypeError for redis://...?password=...)
        reason = (redact_url(str(exc)).strip().splitlines() or [""])[0]
        shown = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
        return Check("broker", FAIL, f"{where} unreachable ({shown}): check CELERY_BROKER_URL")
    return Check("broker", OK, f"{where} reachable")


def check_model(settings: Settings) -> Check:
    from transcriber.model_store import ensure_available, ensure_device
    from transcriber.runner import SupervisedModel, model_config_for

    ensure_device(settings.whisper_device)  # the same refusal as 'transcriber worker'
    began = time.monotonic()
    ensure_available(settings.whisper_model, settings.whisper_model_dir)
    runner = SupervisedModel(model_config_for(settings))
    try:
        runner.start()
    finally:
        runner.close()
    config = runner.config
    return Check(
        "model",
        OK,
        f"{settings.whisper_model} on {config.device} ({config.compute_type}, {config.cpu_threads} threads) "
        f"loaded in {runner.load_seconds or 0:.1f}s ({time.monotonic() - began:.1f}s with process start)",
    )


def check_speakers(settings: Settings, *, load: bool) -> Check:
    """Whether mono calls get speaker turns (``DIARIZE``), and with ``load`` that the voice model really loads."""
    from transcriber.diarization import Diarizer, unavailable

    if settings.diarize == "off":
        return Check("speakers", OK, "DIARIZE=off: mono calls are one block of text (two-channel calls keep sides)")
    reason = unavailable()
    if reason:
        status = FAIL if settings.diarize == "on" else OK
        return Check("speakers", status, f"DIARIZE={settings.diarize}, no speaker turns on mono calls: {reason}")
    if not load:
        return Check("speakers", OK, f"DIARIZE={settings.diarize}: installed (not loaded: --no-model)")
    import numpy as np

    began = time.monotonic()
    embedding = Diarizer(threads=settings.whisper_cpu_threads).embed(np.zeros(32000, dtype=np.float32), [(0.0, 1.5)])
    if embedding.shape != (1, 192):
        return Check("speakers", FAIL, f"the voice model gave an embedding of shape {embedding.shape}, not (1, 192)")
    return Check("speakers", OK, f"DIARIZE={settings.diarize}: voice model loaded in {time.monotonic() - began:.1f}s, "
                                 f"up to {settings.diarize_max_speakers} speakers per mono call")  # fmt: skip


def check_folders(settings: Settings) -> list[Check]:
    """The folders every service uses, checked by listing and writing as this user (``selfcheck.check_folder``);
    the services check their own as their own accounts (``doctor --as-service``)."""
    from transcriber.selfcheck import account_name, folder_checks

    return folder_checks(settings, "doctor", account_name())


def beat_tick_seconds(settings: Settings) -> float:
    """How often a running beat notes its tick: before each job it runs, so at the shorter of the two intervals."""
    return min(settings.cleanup_interval_seconds, settings.dispatch_interval_seconds)


def beat_advice(
    *, now: datetime, last_cleanup: datetime | None, beats: list[BeatTick], cleanup_interval: float, tick: float
) -> Check:
    """Pure: is beat running, and only one? ``beats``: those that ticked within two ticks (a late tick
    is not a stopped beat)."""
    allowed = timedelta(seconds=max(3 * cleanup_interval, 120))
    if last_cleanup is None:
        return Check("beat", FAIL, "no cleanup run recorded: start exactly one 'transcriber beat' (and a worker)")
    age = now - last_cleanup
    if age > allowed:
        return Check("beat", FAIL, f"last cleanup ran {age.total_seconds():.0f}s ago: is beat (and a worker) running?")
    if len(beats) > 1:
        which = ", ".join(f"pid {b.pid} on {b.host}" for b in beats)
        return Check("beat", WARN, f"{len(beats)} beats ticked in the last {2 * tick:.0f}s ({which}): run exactly one "
                     "beat per deployment (Windows: install.ps1 -NoBeat on the other machines; Linux: disable "
                     "transcriber-beat there); if one was just restarted, run doctor again in "
                     f"{2 * tick:.0f}s")  # fmt: skip
    return Check("beat", OK, f"last cleanup {age.total_seconds():.0f}s ago")


def check_beat(settings: Settings, sessions: sessionmaker[Session], now: datetime) -> Check:
    tick = beat_tick_seconds(settings)
    with sessions() as session:
        last = session.scalar(select(ServiceRun.last_run_at).where(ServiceRun.name == "cleanup_stuck"))
        beats = live_beats(session, now=now, within=2 * tick)
    return beat_advice(now=now, last_cleanup=last, beats=beats, cleanup_interval=settings.cleanup_interval_seconds,
                       tick=tick)  # fmt: skip


def check_webhooks(settings: Settings, sessions: sessionmaker[Session], now: datetime) -> Check:
    """Off, or where events go (the origin only: the URL may carry a token) and what is stuck in the outbox."""
    from transcriber.webhooks import origin_of, summary

    if not settings.webhooks_enabled:
        return Check("webhooks", OK, "WEBHOOK_URL not set: no events are written")
    where = origin_of(settings.webhook_url.get_secret_value())
    with sessions() as session:
        data = summary(session, now=now)
    if data["failed"]:
        last = data["last_error"]
        why = f"; last error: {last['error']}" if last else ""
        return Check("webhooks", WARN, f"{data['failed']} event(s) to {where} gave up{why}: fix the receiver, then "
                                       "'transcriber webhooks retry --failed'")  # fmt: skip
    age = data["oldest_pending_age_seconds"]
    if data["pending"] and age is not None and age > 300:
        return Check("webhooks", WARN, f"{data['pending']} event(s) to {where} pending, the oldest {age:.0f}s: "
                                       "is beat running, and the receiver up? ('transcriber webhooks')")  # fmt: skip
    return Check("webhooks", OK, f"to {where}: {data['delivered']} delivered, {data['pending']} pending")


def explain_failure(exc: Exception) -> str:
    """Why a check could not run, in one line with no password: what to do when we know it."""
    if isinstance(exc, TranscriberError):
        return str(exc)
    cause = getattr(exc, "orig", None) or exc
    first = (redact_url(str(cause)).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, ProgrammingError) and "relation" in first and "does not exist" in first:
        return f"the database has no transcriber tables yet ({first}): run 'transcriber db upgrade'"
    if isinstance(exc, OperationalError):
        if "no such table" in first:
            return f"the database has no transcriber tables yet ({first}): run 'transcriber db upgrade'"
        return f"cannot reach the database: {first} (check DATABASE_URL and that it is up)"
    return f"{type(exc).__name__}: {first}"


def run_checks(settings: Settings, *, now: datetime, include_model: bool = True) -> list[Check]:
    """All checks, in the order an operator would fix them; one failing does not hide the others."""
    from transcriber.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    checks: list[Check] = [Check("settings", OK, "valid")]
    steps: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("database", lambda: check_database(settings, sessions)),
        ("broker", lambda: check_broker(settings)),
    ]
    if include_model:
        steps.append(("model", lambda: check_model(settings)))
    steps.append(("speakers", lambda: check_speakers(settings, load=include_model)))
    steps.append(("layout", lambda: check_layout(settings)))
    steps += [
        ("folders", lambda: check_folders(settings)),
        ("beat", lambda: check_beat(settings, sessions, now)),
        ("time limit", lambda: check_time_limit(settings, sessions)),
        ("webhooks", lambda: check_webhooks(settings, sessions, now)),
    ]
    if not settings.embedded_broker:
        checks.append(
            visibility_advice(
                override=settings.broker_visibility_timeout_seconds,
                timeout_seconds=settings.task_timeout_seconds,
                realtime_factor=settings.task_timeout_realtime_factor,
            )
        )
    try:
        for name, step in steps:
            try:
                result = step()
            except Exception as exc:  # a check that cannot run is a failed check, with its reason
                result = Check(name, FAIL, explain_failure(exc))
            checks.extend(result if isinstance(result, list) else [result])
    finally:
        engine.dispose()
    return checks
