"""The model process: holds one loaded Whisper model and transcribes on request.

Run as ``python -m transcriber.model_process`` by ``runner.SupervisedModel``. It
speaks JSON lines: the first line on stdin is the model config; it answers
``ready``; then each ``transcribe`` request is answered by ``info``, ``segment``...,
and ``done`` or ``error``. When its parent dies stdin closes and it exits, so a
killed worker leaves no orphan holding the model.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from transcriber.errors import PermanentError, RetryableError
from transcriber.segments import Segment


def main() -> None:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not break the protocol
    requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=_read_stdin, args=(requests,), daemon=True).start()

    config = requests.get()
    if config is None:
        return
    try:
        model, load_seconds = _load(config)
    except Exception as exc:  # report any load failure as one line, then exit
        _send(protocol, {"type": "error", "kind": "model", "message": f"{type(exc).__name__}: {exc}"})
        return
    _send(protocol, {"type": "ready", "load_seconds": load_seconds, "pid": os.getpid()})
    while (request := requests.get()) is not None:
        _serve(protocol, model, request)


def _read_stdin(requests: queue.Queue[dict[str, Any] | None]) -> None:
    for line in sys.stdin:
        if line.strip():
            requests.put(json.loads(line))
    os._exit(0)  # parent gone: stop at once, even mid-transcription


def _send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _load(config: dict[str, Any]) -> tuple[Any, float]:
    from faster_whisper import WhisperModel

    began = time.monotonic()
    model = WhisperModel(
        config["model"],
        device=config["device"],
        compute_type=config["compute_type"],
        cpu_threads=config["cpu_threads"],
        download_root=config.get("download_root"),
    )
    return model, time.monotonic() - began


def _rss_mb() -> float | None:
    try:
        import psutil

        return round(psutil.Process().memory_info().rss / 2**20, 1)
    except Exception:  # psutil missing or the platform says no: recycling by memory is then off
        return None


_batched: Any = None


def _transcriber(model: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The sequential decoder, or faster-whisper's batched pipeline when a batch size is set."""
    import inspect

    global _batched
    options = dict(options)
    batch_size = int(options.pop("batch_size", 0) or 0)
    if options.get("hallucination_silence_threshold"):
        options["word_timestamps"] = True  # faster-whisper needs word timings to find the silences
    if batch_size <= 0:
        function = model.transcribe
    else:
        if _batched is None:
            from faster_whisper import BatchedInferencePipeline

            _batched = BatchedInferencePipeline(model)
        function = _batched.transcribe
        options.update(batch_size=batch_size, vad_filter=True)  # the batched pipeline chunks by voice activity
    accepted = inspect.signature(function).parameters
    return function, {k: v for k, v in options.items() if k in accepted}


SPLIT_WINDOW_SECONDS = 600.0  # two-channel calls are transcribed side by side in windows of this size


Send = Callable[[dict[str, Any]], None]


def _serve(out: IO[str], model: Any, request: dict[str, Any]) -> None:
    """Answer one request; every reply carries the request's id (the parent drops any other)."""
    from transcriber.audio import SAMPLE_RATE, check_complete, decode_sides, probe_duration

    request_id = request.get("id")

    def send(message: dict[str, Any]) -> None:
        _send(out, {**message, "id": request_id})

    try:
        options = dict(request["options"])
        speakers = options.pop("speakers", None) or ["caller", "callee"]
        sides = decode_sides(request["path"], options.pop("channels", "auto"))
        duration = sides[0].shape[0] / SAMPLE_RATE
        check_complete(duration, probe_duration(request["path"]))
        send({"type": "info", "duration": duration, "channels": len(sides)})
        offset = float(request.get("start") or 0.0)
        if len(sides) == 1:
            summary = _transcribe_side(send, model, sides[0], offset, options, None)
        else:
            summary = _transcribe_sides(send, model, sides, offset, duration, options, speakers)
        send({"type": "done", **summary, "rss_mb": _rss_mb()})
    except PermanentError as exc:
        send({"type": "error", "kind": "permanent", "message": str(exc)})
    except RetryableError as exc:
        send({"type": "error", "kind": "retryable", "message": str(exc)})
    except MemoryError:
        send({"type": "error", "kind": "retryable", "message": "Out of memory in the model process"})
    except Exception as exc:  # keep the root cause; the parent decides
        send({"type": "error", "kind": "retryable", "message": f"{type(exc).__name__}: {exc}"})


def _segment(seg: Any, offset: float, speaker: str | None, keep_words: bool) -> Segment:
    """faster-whisper's segment as ours, in the whole file's time."""
    words = None
    if keep_words and seg.words:
        words = tuple((offset + w.start, offset + w.end, w.word, round(w.probability, 3)) for w in seg.words)
    return Segment(offset + seg.start, offset + seg.end, seg.text, speaker, seg.avg_logprob, seg.no_speech_prob, words)


def _decode_segments(
    model: Any, samples: Any, begin: float, end: float, options: dict[str, Any], speaker: str | None
) -> tuple[list[Segment], Any]:
    """Segments of ``samples[begin:end]`` (seconds), with timestamps in the whole file's time."""
    from transcriber.audio import SAMPLE_RATE
    from transcriber.quality import drop_repeats

    piece = samples[int(begin * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    if piece.shape[0] < SAMPLE_RATE // 10:
        return [], None
    keep_words = bool(options.get("word_timestamps"))
    transcribe, call_options = _transcriber(model, options)
    segments, info = transcribe(piece, **call_options)
    produced = [_segment(seg, begin, speaker, keep_words) for seg in segments]
    keep = drop_repeats([p.text for p in produced])
    return [p for p, k in zip(produced, keep, strict=True) if k], info


def _transcribe_side(
    send: Send, model: Any, samples: Any, offset: float, options: dict[str, Any], speaker: str | None
) -> dict[str, Any]:
    """One channel (or the mix), its segments streamed as they come so progress is saved as it goes."""
    from transcriber.audio import SAMPLE_RATE
    from transcriber.quality import drop_repeats

    piece = samples[int(offset * SAMPLE_RATE) :]
    if piece.shape[0] < SAMPLE_RATE // 10:
        return {"language": None, "language_probability": None, "speech_seconds": 0.0}
    keep_words = bool(options.get("word_timestamps"))
    transcribe, call_options = _transcriber(model, options)
    segments, info = transcribe(piece, **call_options)
    recent: list[str] = []
    for seg in segments:
        recent = (recent + [seg.text])[-3:]
        if not drop_repeats(recent)[-1]:
            continue  # the same words a third time in a row: a loop, not speech
        send({"type": "segment", **_segment(seg, offset, speaker, keep_words).to_wire()})
    return {
        "language": info.language,
        "language_probability": info.language_probability,
        "speech_seconds": getattr(info, "duration_after_vad", None),
    }


def _transcribe_sides(
    send: Send,
    model: Any,
    sides: list[Any],
    offset: float,
    duration: float,
    options: dict[str, Any],
    speakers: list[str],
) -> dict[str, Any]:
    """A two-channel call: both sides window by window, merged by time, each segment with its speaker."""
    languages: list[tuple[float, str]] = []
    speech = 0.0
    begin = offset
    while begin < duration - 0.1:
        end = _quiet_point(sides, begin + SPLIT_WINDOW_SECONDS) if begin + SPLIT_WINDOW_SECONDS < duration else duration
        merged: list[Segment] = []
        for samples, speaker in zip(sides, speakers, strict=False):
            segments, info = _decode_segments(model, samples, begin, end, options, speaker)
            merged.extend(segments)
            if info is not None:
                languages.append((info.language_probability, info.language))
                speech += getattr(info, "duration_after_vad", 0.0) or 0.0
        for segment in sorted(merged, key=lambda s: (s.start, s.end)):
            send({"type": "segment", **segment.to_wire()})
        begin = end
    best = max(languages) if languages else (None, None)
    return {"language": best[1], "language_probability": best[0], "speech_seconds": speech}


def _quiet_point(sides: list[Any], near: float, search: float = 10.0) -> float:
    """The quietest 100 ms (both sides together) in the ``search`` seconds before ``near``: a cut between words."""
    import numpy as np

    from transcriber.audio import SAMPLE_RATE

    frame = SAMPLE_RATE // 10
    lo, hi = int((near - search) * SAMPLE_RATE), int(near * SAMPLE_RATE)
    energy = sum(np.square(side[lo:hi].astype(np.float64)) for side in sides)
    frames = energy[: (len(energy) // frame) * frame].reshape(-1, frame).sum(axis=1)
    return (lo + int(np.argmin(frames)) * frame + frame // 2) / SAMPLE_RATE if len(frames) else near


if __name__ == "__main__":
    main()
