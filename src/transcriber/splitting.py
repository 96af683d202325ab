"""Long calls cut into pieces that different workers transcribe, then merge.

``plan_pieces`` puts a cut near every ``target_seconds`` of the call, each in the middle of a silence that
voice-activity detection finds in a window around its target, so that no word straddles a cut. It decodes only
those windows (seeking), never the whole call. ``decode_range`` gives a piece worker its own range of the file
and no more: its memory follows the piece, not the call. ``choose_cut`` is the decision, pure.

The plan also fixes how every piece treats a two-channel file (``mode``): pieces that decided on their own
could disagree, one hearing two sides where the next hears one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transcriber import coverage
from transcriber.audio import _describe, channels_differ, check_readable, source_channels
from transcriber.coverage import Span
from transcriber.decoding import quiet_point
from transcriber.errors import PermanentError, RetryableError

if TYPE_CHECKING:
    import numpy

SAMPLE_RATE = 16000
MODES = ("mono", "split")

MIN_SILENCE = 0.6  # seconds between VAD spans (which carry 200 ms of padding each side): a pause, not a breath
MAX_SEARCH = 60.0  # seconds either side of a target searched for a silence, at most
SHORTEST_TAIL = 1 / 3  # a last piece shorter than this share of the target joins the piece before it
# Decoded before a range's start and dropped: an AAC or MP3 frame overlaps the one before it, so the first frame
# after a seek is incomplete; the demuxer may also land a little before or after the seek target.
PREROLL = 0.5
_STAT_STEP = 8  # every 8th sample of each window is kept to tell the two sides apart at the end


@dataclass(frozen=True)
class Plan:
    """Where a call is cut, and how each piece treats its channels (``mono``: one signal, ``split``: two sides)."""

    duration: float
    cuts: tuple[float, ...]
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        bounds = (0.0, *self.cuts, self.duration)
        if any(a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
            raise ValueError(f"cuts must increase strictly inside (0, {self.duration}): {self.cuts}")

    def pieces(self) -> list[tuple[float, float]]:
        """``[(0, c1), (c1, c2), ..., (cn, duration)]``: contiguous, covering the whole call."""
        bounds = (0.0, *self.cuts, self.duration)
        return list(zip(bounds, bounds[1:], strict=False))


def plan_pieces(
    path: str, *, duration: float, target_seconds: float, channels: str = "auto", search_seconds: float | None = None
) -> Plan:
    """Cut points near ``k * target_seconds`` (k = 1, 2, ...), each in the middle of a silence.

    Each target is searched ``search_seconds`` either side (default: a quarter of the target, at most a minute;
    never more than half the target, so windows do not overlap); a target whose window passes the end of the call
    is not cut, nor one that would leave a last piece shorter than a third of the target. Where a window has no
    silence at all (hold music, a tone) the cut goes to its quietest 100 ms. ``channels`` is auto|mix|split, as
    for ``audio.decode_sides``. Raises ``PermanentError`` or ``RetryableError`` as ``decode_range`` does.
    """
    if target_seconds <= 0:
        raise ValueError(f"target_seconds must be positive, not {target_seconds}")
    check_readable(path)
    search = min(MAX_SEARCH, target_seconds / 4) if search_seconds is None else search_seconds
    search = min(search, target_seconds / 2)
    stereo = channels != "mix" and source_channels(path) == 2
    cuts: list[float] = []
    lefts: list[numpy.ndarray] = []
    rights: list[numpy.ndarray] = []
    for target in _targets(duration, target_seconds, search):
        sides = decode_range(path, target - search, target + search, mode="split" if stereo else "mono")
        if sides[0].size < SAMPLE_RATE:  # the file ends before its stated duration: nothing more to cut
            break
        cuts.append(_cut_in(sides, target - search, target))
        if stereo:
            lefts.append(sides[0][::_STAT_STEP])
            rights.append(sides[1][::_STAT_STEP])
    if cuts and duration - cuts[-1] < SHORTEST_TAIL * target_seconds:
        cuts.pop()
    mode = "mono"
    if stereo:
        mode = "split" if channels == "split" or _sides_differ(path, lefts, rights) else "mono"
    return Plan(duration, tuple(cuts), mode)


def choose_cut(speech: Sequence[Span], window: Span, target: float, min_silence: float = MIN_SILENCE) -> float | None:
    """The middle of the best silence in ``window`` between the ``speech`` spans (absolute seconds).

    Best: of the silences at least ``min_silence`` long, the one whose middle is closest to ``target``; failing
    that, the longest silence; ``None`` when speech fills the whole window.
    """
    silences = coverage.subtract([window], speech)
    if not silences:
        return None
    long_enough = [s for s in silences if s[1] - s[0] >= min_silence]
    if long_enough:
        start, end = min(long_enough, key=lambda s: abs((s[0] + s[1]) / 2 - target))
    else:
        start, end = max(silences, key=lambda s: s[1] - s[0])
    return (start + end) / 2


def decode_range(path: str, start: float, end: float | None, *, mode: str) -> list[numpy.ndarray]:
    """The audio of ``[start, end)`` (``end`` None: to the end) as 16 kHz float32: ``[mono]``, or ``[left, right]``.

    ``mode`` is ``mono`` or ``mix`` (PyAV's downmix) or ``split``. Seconds count as in ``audio.decode`` of the
    whole file, whose samples these are, give or take a few milliseconds. Seeks, so memory follows the range.
    Raises ``PermanentError`` for audio that cannot be decoded, ``RetryableError`` for an I/O error.
    """
    import av

    if mode not in ("mono", "mix", "split"):
        raise ValueError(f"mode must be mono, mix or split, not {mode!r}")
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"not a range of a call: [{start}, {end})")
    check_readable(path)
    try:
        return _read_range(path, start, end, stereo=mode == "split")
    except (av.error.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        raise PermanentError(f"Unreadable audio: {_describe(exc)}") from None
    except OSError as exc:
        raise RetryableError(f"I/O error reading {path}: {exc}") from exc


# ---------------------------------------------------------------- planning


def _targets(duration: float, target_seconds: float, search: float) -> Iterator[float]:
    """``k * target_seconds`` for k = 1, 2, ... while the window around it ends inside the call."""
    k = 1
    while k * target_seconds + search <= duration:
        yield k * target_seconds
        k += 1


def _cut_in(sides: Sequence[numpy.ndarray], offset: float, target: float) -> float:
    """The cut nearest ``target`` in a window of ``sides`` that starts at ``offset`` seconds of the call."""
    length = sides[0].size / SAMPLE_RATE
    if len(sides) == 2 and not channels_differ(*sides):
        sides = [(sides[0] + sides[1]) / 2]  # one signal twice: hear it once
    # A cut must be silent on every side: the speech of both sides together.
    speech = coverage.merge((offset + a, offset + b) for side in sides for a, b in coverage.speech_spans(side))
    cut = choose_cut(speech, (offset, offset + length), target)
    if cut is None:  # speech (or music) throughout: the quietest moment is the least bad
        cut = offset + quiet_point(sides, length, length)
    return cut


def _sides_differ(path: str, lefts: list[numpy.ndarray], rights: list[numpy.ndarray]) -> bool:
    """Whether the two channels are two sides of a call, judged on the windows (or, with none, the whole call)."""
    import numpy as np

    if not lefts:  # a call of one piece: the piece is the call
        return bool(channels_differ(*decode_range(path, 0.0, None, mode="split")))
    return bool(channels_differ(np.concatenate(lefts), np.concatenate(rights)))


# ---------------------------------------------------------------- decoding a range


def _read_range(path: str, start: float, end: float | None, *, stereo: bool, seek: bool = True) -> list[numpy.ndarray]:
    import av
    import numpy as np

    channels = 2 if stereo else 1
    first = round(start * SAMPLE_RATE)
    last = None if end is None else round(end * SAMPLE_RATE)
    kept: list[numpy.ndarray] = []
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.audio[0]
        base = stream.time_base
        # Second 0 of a full decode is the stream's first sample: after an MP3's or Opus's encoder delay.
        origin = float(stream.start_time * base) if stream.start_time is not None and base else 0.0
        seeked = False
        if seek and start > PREROLL and base is not None:
            seeked = True
            container.seek(int((origin + start - PREROLL) / base), stream=stream, backward=True)
        resampler = av.AudioResampler(format="s16", layout="stereo" if stereo else "mono", rate=SAMPLE_RATE)
        at: int | None = None  # the call's sample (16 kHz) that the resampler's next output sample is
        for frame in _frames(container, stream):
            if at is None:
                if seeked and frame.time is None:  # no timestamp to place the seek by: read from the start instead
                    return _read_range(path, start, end, stereo=stereo, seek=False)
                at = round((frame.time - origin) * SAMPLE_RATE) if seeked else 0
                if at > first:  # landed past the start (never seen): silence keeps the samples in place
                    kept.append(np.zeros((at - first, channels), dtype=np.int16))
            frame.pts = None  # the resampler's timestamp checks would refuse a gap; the count is what matters
            for out in resampler.resample(frame):
                at = _keep(out.to_ndarray().reshape(-1, channels), at, first, last, kept)
            if last is not None and at >= last:
                break
        else:
            for out in resampler.resample(None):
                at = _keep(out.to_ndarray().reshape(-1, channels), at or 0, first, last, kept)
    pcm = np.concatenate(kept) if kept else np.zeros((0, channels), dtype=np.int16)
    samples = pcm.T.astype(np.float32, order="C")  # one row per channel, each contiguous
    samples /= 32768.0
    return list(samples)


def _frames(container: Any, stream: Any) -> Iterator[Any]:
    """The stream's frames, skipping the ones the decoder cannot read (as faster-whisper's ``decode_audio`` does)."""
    import av

    frames = container.decode(stream)
    while True:
        try:
            yield next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue


def _keep(block: numpy.ndarray, at: int, first: int, last: int | None, kept: list[numpy.ndarray]) -> int:
    """Keep the part of ``block`` (samples from the call's sample ``at`` on) inside ``[first, last)``."""
    lo = max(first - at, 0)
    hi = block.shape[0] if last is None else min(last - at, block.shape[0])
    if hi > lo:
        kept.append(block[lo:hi].copy())
    return at + block.shape[0]
