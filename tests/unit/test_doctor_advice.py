"""The time-limit advice: catches a 30-minute limit against 60-minute calls before they fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from transcriber.doctor import FAIL, OK, limit_advice
from transcriber.report import estimate_finish
from transcriber.settings import Settings


def test_the_incident_is_caught_and_the_fix_named() -> None:
    check = limit_advice(timeout_seconds=1800, realtime_factor=0, durations=[3600, 3700, 600], speeds=[0.6] * 20)
    assert check.status == FAIL
    assert "2 queued/failed recording(s) cannot finish" in check.detail
    assert "TASK_TIMEOUT_SECONDS=3360" in check.detail  # 3700 s x 0.6 x 1.5 margin, rounded up to a minute


def test_enough_time_or_nothing_known_is_fine() -> None:
    assert limit_advice(timeout_seconds=7200, realtime_factor=0, durations=[3600], speeds=[0.6]).status == OK
    assert limit_advice(timeout_seconds=0, realtime_factor=0, durations=[99999], speeds=[5.0]).status == OK
    assert limit_advice(timeout_seconds=60, realtime_factor=0, durations=[3600], speeds=[]).status == OK
    assert limit_advice(timeout_seconds=60, realtime_factor=1.0, durations=[3600], speeds=[0.5]).status == OK


def test_estimated_finish_uses_the_speed_so_far() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    started = now - timedelta(seconds=100)
    # 200 s of audio done since 100 s of audio into the file: 2 s of audio per second; 600 s left -> 300 s.
    assert estimate_finish(now=now, started_at=started, audio_start=100, done=300, duration=900) == now + timedelta(
        seconds=300
    )
    assert estimate_finish(now=now, started_at=started, audio_start=0, done=None, duration=900) is None
    assert estimate_finish(now=now, started_at=started, audio_start=300, done=300, duration=900) is None


def test_every_setting_is_documented_in_env_example() -> None:
    text = (Path(__file__).parents[2] / ".env.example").read_text()
    assert [f.upper() for f in Settings.model_fields if f"{f.upper()}=" not in text] == []


def test_a_visibility_timeout_shorter_than_an_attempt_is_named() -> None:
    from transcriber.doctor import WARN, visibility_advice

    assert visibility_advice(override=0, timeout_seconds=7200, realtime_factor=0).status == OK
    assert visibility_advice(override=86400, timeout_seconds=7200, realtime_factor=0).status == OK
    short = visibility_advice(override=3600, timeout_seconds=7200, realtime_factor=0)
    assert short.status == WARN
    assert "BROKER_VISIBILITY_TIMEOUT_SECONDS=3600 but an attempt may run 7200s" in short.detail
    assert "set it to 0 (derived: 43200s)" in short.detail
    unbounded = visibility_advice(override=86400, timeout_seconds=7200, realtime_factor=1.0)
    assert unbounded.status == WARN and "has no fixed limit" in unbounded.detail


@pytest.mark.parametrize(
    ("timeout", "factor", "durations", "status", "count"),
    [
        # speed 0.6 s/s, margin 1.5: a recording needs 0.9 x its duration
        (2000, 0, [3000], FAIL, 1),  # 1800 s of work fits, not with the margin (2700): it used to say "0 ..."
        (2000, 0, [3000, 3500], FAIL, 2),  # the count uses the margin too (it used to count 1)
        (2000, 0, [2000, 2222], OK, 0),  # needs 1800 and 1999.8
        (1800, 0, [2000], OK, 0),  # needs exactly 1800
        (1800, 0, [2001], FAIL, 1),
        (1799, 0, [600, 1000, 2000, 2100], FAIL, 2),
        (1000, 0.9, [3600, 7200], OK, 0),  # the factor gives each its 0.9 x duration
        (1000, 0.8, [1000, 3600], FAIL, 1),  # 1000 s of audio: limit 1000 >= 900; 3600 s: 2880 < 3240
        (0, 0, [99999], OK, 0),  # no limit
    ],
)
def test_verdict_count_and_advice_use_one_margin(
    timeout: int, factor: float, durations: list[float], status: str, count: int
) -> None:
    check = limit_advice(timeout_seconds=timeout, realtime_factor=factor, durations=durations, speeds=[0.6] * 20)
    assert check.status == status
    if status == FAIL:
        assert check.detail.startswith(f"{count} queued/failed recording(s) cannot finish in one attempt")
        # The advice, applied, makes every one of them fit: the check then passes.
        advised = int(check.detail.split("set TASK_TIMEOUT_SECONDS=")[1].split()[0])
        assert limit_advice(timeout_seconds=advised, realtime_factor=factor, durations=durations,
                            speeds=[0.6] * 20).status == OK  # fmt: skip
        advised_factor = float(check.detail.split("TASK_TIMEOUT_REALTIME_FACTOR=")[1])
        assert limit_advice(timeout_seconds=timeout, realtime_factor=advised_factor, durations=durations,
                            speeds=[0.6] * 20).status == OK  # fmt: skip


def test_the_time_limit_is_sized_for_a_piece_when_calls_are_split() -> None:
    from transcriber.doctor import attempt_audio

    split = Settings(_env_file=None, split_min_seconds=600, split_target_seconds=300)
    whole = Settings(_env_file=None, split_min_seconds=0)
    assert attempt_audio(3600, split) == 450 and attempt_audio(500, split) == 500
    assert attempt_audio(3600, whole) == 3600
    # The incident: 30-minute limit, 60-minute calls, 0.6 s of work per s of audio. Split, a piece fits.
    pieces = [attempt_audio(d, split) for d in (3600, 3700)]
    assert limit_advice(timeout_seconds=1800, realtime_factor=0, durations=pieces, speeds=[0.6] * 20).status == OK


def test_layout_advice_follows_the_cores_and_warns_of_oversubscription() -> None:
    from transcriber.doctor import WARN, layout_advice

    two = layout_advice(cores=2, device="cpu", cpu_threads=0, split_min_seconds=600)
    assert two.status == OK and "2 model process(es) x 1 thread(s)" in two.detail
    sixteen = layout_advice(cores=16, device="cpu", cpu_threads=0, split_min_seconds=600)
    assert "8 model process(es) x 2 thread(s)" in sixteen.detail
    assert layout_advice(cores=2, device="cpu", cpu_threads=2, split_min_seconds=600).status == WARN
    assert "SPLIT_MIN_SECONDS=0" in layout_advice(cores=2, device="cpu", cpu_threads=0, split_min_seconds=0).detail
    assert "WHISPER_BATCH_SIZE" in layout_advice(cores=16, device="cuda", cpu_threads=0, split_min_seconds=600).detail


def test_default_concurrency_is_one_process_per_core_up_to_eight_and_one_per_gpu() -> None:
    from transcriber.runner import MAX_DEFAULT_PROCESSES, default_concurrency

    assert [default_concurrency("cpu", n) for n in (1, 2, 4, 16)] == [1, 2, 4, MAX_DEFAULT_PROCESSES]
    assert default_concurrency("cuda", 16) == 1


def test_the_worker_reads_the_pool_however_it_is_written() -> None:
    from transcriber.cli import _option

    for extra, pool in ((["--pool=solo"], "solo"), (["--pool", "threads"], "threads"), (["-P", "solo"], "solo"),
                        (["-Psolo"], "solo"), (["--loglevel=INFO"], None), ([], None)):  # fmt: skip
        assert _option(extra, "--pool", "-P") == pool, extra


def test_the_pool_is_known_by_the_class_celery_makes_of_its_name() -> None:
    from celery.concurrency import get_implementation

    from transcriber.tasks import pool_name

    for option in ("solo", "threads", "prefork"):
        assert pool_name(get_implementation(option)) == option  # what worker_init's sender holds
        assert pool_name(option) == option


def test_beat_warns_when_two_beats_ticked_naming_them() -> None:
    from transcriber.doctor import WARN, beat_advice
    from transcriber.maintenance import BeatTick

    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    one = BeatTick(host="app1", pid=4242, at=now - timedelta(seconds=1))
    two = BeatTick(host="app2", pid=77, at=now - timedelta(seconds=3))
    recent = now - timedelta(seconds=30)

    def advice(last: datetime | None, beats: list[BeatTick]):  # type: ignore[no-untyped-def]
        return beat_advice(now=now, last_cleanup=last, beats=beats, cleanup_interval=60, tick=2)

    assert advice(recent, [one]).status == OK
    assert advice(recent, []).status == OK  # a version before beats noted their ticks
    both = advice(recent, [one, two])
    assert both.status == WARN
    assert both.detail.startswith("2 beats ticked in the last 4s (pid 4242 on app1, pid 77 on app2): run exactly one")
    assert "install.ps1 -NoBeat on the other machines" in both.detail and "disable transcriber-beat" in both.detail
    assert both.detail.endswith("if one was just restarted, run doctor again in 4s")
    assert advice(None, [one, two]).status == FAIL  # no cleanup at all says more than two beats
    assert advice(now - timedelta(hours=1), [one]).status == FAIL
