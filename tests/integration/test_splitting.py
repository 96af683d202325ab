"""Cutting a long call into pieces: real speech (espeak-ng) in real files (AAC in .m4a, PCM in .wav).

The cuts fall where the VAD of the whole call hears no speech, the pieces cover the call, and a piece's own
decode lines up with the whole call's decode; ``choose_cut``, the decision, is tested from a table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speech import SENTENCES, silence, speak, write_audio
from transcriber import audio, coverage
from transcriber.errors import PermanentError
from transcriber.splitting import Plan, choose_cut, decode_range, plan_pieces

RATE = 16000
PAUSES = (0.4, 0.9, 1.6, 0.5, 2.4, 0.7, 1.2)  # short pauses and long ones: a cut must find a long one
MAX_LAG = int(0.03 * RATE)  # a range may sit this far from where the full decode has it


@pytest.fixture(scope="module")
def voices() -> list[np.ndarray]:
    return [speak(sentence) for sentence in SENTENCES]


def call(voices: list[np.ndarray], seconds: float) -> np.ndarray:
    """The sentences in turn with pauses of varying length, until ``seconds`` are filled."""
    parts: list[np.ndarray] = [silence(0.5)]
    at, i = 0.5, 0
    while at < seconds:
        voice, pause = voices[i % len(voices)], silence(PAUSES[i % len(PAUSES)])
        parts += [voice, pause]
        at += (len(voice) + len(pause)) / RATE
        i += 1
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("splitting")


@pytest.fixture(scope="module")
def long_call(voices: list[np.ndarray], folder: Path) -> dict[str, str]:
    """A four-minute mono call, as .m4a and as .wav."""
    samples = call(voices, 240)
    return {suffix: str(write_audio(folder / f"long{suffix}", samples)) for suffix in (".m4a", ".wav")}


@pytest.fixture(scope="module")
def two_sides(voices: list[np.ndarray], folder: Path) -> str:
    """A stereo call of 80 s: one party on the left, the other on the right, taking turns."""
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    i = 0
    while sum(len(x) for x in left) < 80 * RATE:
        voice, pause = voices[i % len(voices)], silence(PAUSES[i % len(PAUSES)])
        speaking, quiet = (left, right) if i % 2 == 0 else (right, left)
        speaking += [voice, pause]
        quiet += [silence(len(voice) / RATE), pause]
        i += 1
    return str(write_audio(folder / "sides.m4a", np.concatenate(left), right=np.concatenate(right)))


def duration_of(path: str) -> float:
    seconds = audio.probe_duration(path)
    assert seconds
    return seconds


def crossing(spans: list[coverage.Span], cuts: tuple[float, ...]) -> list[tuple[float, coverage.Span]]:
    return [(cut, span) for cut in cuts for span in spans if span[0] < cut < span[1]]


def lag(piece: np.ndarray, reference: np.ndarray) -> int:
    """The shift (samples) that best lines ``piece`` up with ``reference``, by cross-correlation."""
    n = min(len(piece), len(reference)) - 2 * MAX_LAG
    a = piece[MAX_LAG : MAX_LAG + n].astype(np.float64)
    scores = [float(np.dot(a, reference[MAX_LAG + k : MAX_LAG + k + n])) for k in range(-MAX_LAG, MAX_LAG + 1)]
    return int(np.argmax(scores)) - MAX_LAG


# ---------------------------------------------------------------- the plan


@pytest.mark.parametrize("suffix", [".m4a", ".wav"])
def test_cuts_fall_in_silence_near_each_target_and_the_pieces_cover_the_call(
    long_call: dict[str, str], suffix: str
) -> None:
    path = long_call[suffix]
    duration = duration_of(path)
    plan = plan_pieces(path, duration=duration, target_seconds=60)

    assert len(plan.cuts) == 3 and plan.mode == "mono"
    for k, cut in enumerate(plan.cuts, start=1):
        assert abs(cut - 60 * k) <= 15  # a quarter of the target either side
    speech = coverage.speech_spans(audio.decode(path))
    assert speech and not crossing(speech, plan.cuts)
    pieces = plan.pieces()
    assert pieces[0][0] == 0 and pieces[-1][1] == duration
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))


def test_a_call_shorter_than_the_target_is_one_piece(long_call: dict[str, str]) -> None:
    path = long_call[".m4a"]
    plan = plan_pieces(path, duration=duration_of(path), target_seconds=300)
    assert plan.cuts == () and plan.pieces() == [(0, plan.duration)] and plan.mode == "mono"


def test_a_short_last_piece_joins_the_one_before(long_call: dict[str, str]) -> None:
    path = long_call[".wav"]
    duration = duration_of(path)  # about 241 s: a cut near 220 would leave a last piece under 110 / 3 s
    plan = plan_pieces(path, duration=duration, target_seconds=110, search_seconds=10)
    assert len(plan.cuts) == 1 and abs(plan.cuts[0] - 110) <= 10


def test_continuous_speech_is_cut_at_its_quietest_moment_in_the_window(voices: list[np.ndarray], folder: Path) -> None:
    samples = np.concatenate(voices * 3)  # no pause at all: 71 s that the VAD hears as one span
    path = str(write_audio(folder / "talker.wav", samples))
    plan = plan_pieces(path, duration=duration_of(path), target_seconds=40, search_seconds=5)

    assert len(plan.cuts) == 1 and 35 <= plan.cuts[0] <= 45
    frames = np.square(samples[35 * RATE : 45 * RATE]).reshape(-1, RATE // 10).sum(axis=1)
    at = int((plan.cuts[0] - 35) * 10)
    assert frames[at] <= np.quantile(frames, 0.05)  # among the window's quietest 100 ms


def test_two_sides_are_split_and_cut_where_both_are_silent(two_sides: str) -> None:
    duration = duration_of(two_sides)
    plan = plan_pieces(two_sides, duration=duration, target_seconds=25)

    assert plan.mode == "split" and len(plan.cuts) >= 2
    left, right = audio.decode_sides(two_sides, "split")
    speech = coverage.merge(coverage.speech_spans(left) + coverage.speech_spans(right))
    assert not crossing(speech, plan.cuts)
    assert plan_pieces(two_sides, duration=duration, target_seconds=25, channels="mix").mode == "mono"
    assert plan_pieces(two_sides, duration=duration, target_seconds=300).mode == "split"  # one piece: whole call


def test_one_signal_on_both_channels_is_mono(long_call: dict[str, str], folder: Path) -> None:
    samples = audio.decode(long_call[".wav"])[: 90 * RATE]
    path = str(write_audio(folder / "twice.wav", samples, right=samples))
    plan = plan_pieces(path, duration=duration_of(path), target_seconds=40)
    assert plan.mode == "mono" and len(plan.cuts) == 1
    assert plan_pieces(path, duration=duration_of(path), target_seconds=40, channels="split").mode == "split"


# ---------------------------------------------------------------- a piece's own decode


@pytest.mark.parametrize("suffix", [".m4a", ".wav"])
@pytest.mark.parametrize("start, end", [(97.3, 131.9), (200.0, None)])
def test_a_range_lines_up_with_the_full_decode(
    long_call: dict[str, str], suffix: str, start: float, end: float | None
) -> None:
    path = long_call[suffix]
    full = audio.decode(path)
    (piece,) = decode_range(path, start, end, mode="mono")
    reference = full[int(start * RATE) : None if end is None else int(end * RATE)]
    assert piece.dtype == np.float32 and abs(len(piece) - len(reference)) <= MAX_LAG
    assert abs(lag(piece, reference)) <= MAX_LAG


def test_a_range_of_two_sides_lines_up_side_by_side(two_sides: str) -> None:
    left, right = audio.decode_sides(two_sides, "split")
    pieces = decode_range(two_sides, 31.0, 52.5, mode="split")
    assert len(pieces) == 2
    for piece, full in zip(pieces, (left, right), strict=True):
        assert abs(lag(piece, full[31 * RATE : int(52.5 * RATE)])) <= MAX_LAG


def test_unreadable_audio_is_a_permanent_error(folder: Path) -> None:
    path = folder / "broken.m4a"
    path.write_bytes(np.random.default_rng(0).bytes(50_000))
    with pytest.raises(PermanentError, match="Unreadable audio"):
        decode_range(str(path), 10.0, 20.0, mode="mono")
    with pytest.raises(PermanentError, match="Unreadable audio"):
        plan_pieces(str(path), duration=600, target_seconds=120)


# ---------------------------------------------------------------- the decision, pure

WINDOW = (100.0, 130.0)


@pytest.mark.parametrize(
    "speech, expected",
    [
        ([], 115.0),  # all silence: the middle of the window
        ([(100.0, 113.0), (114.0, 130.0)], 113.5),  # the one pause
        ([(100.0, 105.0), (106.0, 114.5), (115.5, 130.0)], 115.0),  # of two long pauses, the one nearer the target
        ([(100.0, 111.0), (111.3, 120.0), (120.5, 130.0)], 120.25),  # all pauses short: the longest
        ([(90.0, 112.0), (118.0, 140.0)], 115.0),  # speech running past the window's edges is clipped
        ([(98.0, 101.0), (101.2, 129.0)], 129.5),  # a pause at the window's edge counts
        ([(95.0, 135.0)], None),  # speech throughout
    ],
)
def test_choose_cut(speech: list[coverage.Span], expected: float | None) -> None:
    assert choose_cut(speech, WINDOW, 114.0) == expected


def test_plan_refuses_cuts_outside_the_call() -> None:
    assert Plan(10.0, (4.0, 7.0), "split").pieces() == [(0.0, 4.0), (4.0, 7.0), (7.0, 10.0)]
    for cuts in [(7.0, 4.0), (0.0,), (10.0,)]:
        with pytest.raises(ValueError, match="cuts"):
            Plan(10.0, cuts, "mono")
    with pytest.raises(ValueError, match="mode"):
        Plan(10.0, (), "mix")
