"""The model process: holds one loaded Whisper model and transcribes on request.

Run as ``python -m transcriber.model_process`` by ``runner.SupervisedModel``. It
speaks JSON lines: the first line on stdin is the model config; it answers
``ready``; then each ``transcribe`` request is answered by ``info``, ``segment`` and
``reached`` (decoded up to a point)..., then, for a mono call that asks for speaker
turns, ``diarizing`` and ``turns``, and ``done`` or ``error``. How the audio is
decoded is ``decoding``'s business; how turns are found, ``diarization``'s. When its
parent dies stdin closes and it exits, so a killed worker leaves no orphan holding the model.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
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
    voices = _Speakers(int(config.get("cpu_threads") or 0))
    while (request := requests.get()) is not None:
        _serve(protocol, model, request, voices)


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


class _Speakers:
    """The diarizer, loaded on the first mono call that asks for turns and kept for the next ones."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.diarizer: Any = None

    def turns(self, samples: Any, max_speakers: int) -> dict[str, Any]:
        """The ``turns`` reply: the turns found, or the error that stopped them (the transcript is kept)."""
        try:
            if self.diarizer is None:
                from transcriber.diarization import Diarizer

                self.diarizer = Diarizer(self.threads)
            found = self.diarizer.run(samples, max_speakers=max_speakers)
        except Exception as exc:  # MemoryError included: diarization must not cost the call its transcript
            return {"type": "turns", "error": f"{type(exc).__name__}: {exc}".strip()}
        return {"type": "turns", **found.to_json()}


def _piece_of(
    request: dict[str, Any], channels: str, send: Any
) -> tuple[tuple[float, float] | None, str, float | None]:
    """The audio range this request decodes, how its channels are taken, and the whole call's duration.

    A piece names its range; a long call not yet cut (``split``) is cut here: the plan is sent as
    ``pieces`` and piece 0 is decoded. ``None`` for a call decoded whole.
    """
    from transcriber.audio import probe_duration
    from transcriber.splitting import plan_pieces

    if request.get("piece"):
        start, end = request["piece"]
        return (float(start), float(end)), str(request.get("split_channels") or "mono"), request.get("duration")
    split = request.get("split")
    duration = probe_duration(request["path"]) if split else None
    if not split or not duration or duration <= float(split["min"]):
        return None, channels, None
    plan = plan_pieces(request["path"], duration=duration, target_seconds=float(split["target"]), channels=channels)
    if not plan.cuts:
        return None, channels, None
    send({"type": "pieces", "cuts": list(plan.cuts), "duration": plan.duration, "channels": plan.mode})
    return plan.pieces()[0], plan.mode, plan.duration


def _serve(out: IO[str], model: Any, request: dict[str, Any], voices: _Speakers | None = None) -> None:
    """Answer one request; every reply carries the request's id (the parent drops any other)."""
    from transcriber.audio import SAMPLE_RATE, check_complete, decode_sides, probe_duration
    from transcriber.decoding import decode
    from transcriber.splitting import decode_range

    request_id = request.get("id")

    def send(message: dict[str, Any]) -> None:
        _send(out, {**message, "id": request_id})

    try:
        options = dict(request["options"])
        speakers = options.pop("speakers", None) or ["caller", "callee"]
        channels = options.pop("channels", "auto")
        path = request["path"]
        if request.get("turns_only"):  # the merge of a split mono call: its speaker turns, over the whole call
            samples = decode_sides(path, "mix")[0]
            send({"type": "diarizing"})
            send((voices or _Speakers(0)).turns(samples, int((request.get("diarize") or {}).get("max_speakers") or 2)))
            send({"type": "done", "language": None, "language_probability": None, "speech": None, "rss_mb": _rss_mb()})
            return
        piece, mode, total = _piece_of(request, channels, send)
        if piece is None:
            sides, origin = decode_sides(path, channels), 0.0
            total = sides[0].shape[0] / SAMPLE_RATE
            check_complete(total, probe_duration(path))
        else:
            origin, end = piece
            sides = decode_range(path, origin, end, mode=mode)
            if end >= (total or 0.0) - 0.05:  # the last piece reads to the end: a truncated file shows here
                check_complete(origin + sides[0].shape[0] / SAMPLE_RATE, total)
        send({"type": "info", "duration": total, "channels": len(sides)})
        # Earlier attempts' segments, as the time they cover: [start, end, speaker] (the text does not matter here).
        previous = [Segment(float(a) - origin, float(b) - origin, "(saved)", who)
                    for a, b, who in request.get("previous") or []]  # fmt: skip
        diarize = request.get("diarize") if len(sides) == 1 and piece is None else None
        if diarize:  # the turns are given to words by their own times: keep them (found anyway by default)
            options["word_timestamps"] = True
        summary = decode(
            model,
            sides,
            options,
            lambda segment: send({"type": "segment", **segment.shifted(origin).to_wire()}),
            start=float(request.get("start") or 0.0) - origin,
            previous=previous,
            speakers=speakers,
            first_piece=request.get("first_piece"),
            on_reached=lambda seconds: send({"type": "reached", "seconds": seconds + origin}),
        )
        if diarize and diarize.get("find", True):
            send({"type": "diarizing"})
            send((voices or _Speakers(0)).turns(sides[0], int(diarize.get("max_speakers") or 2)))
        send(
            {
                "type": "done",
                "language": summary.language,
                "language_probability": summary.language_probability,
                "speech": [[g.start + origin, g.end + origin, g.speaker] for g in summary.speech],
                "repaired": summary.repaired,
                "rss_mb": _rss_mb(),
            }
        )
    except PermanentError as exc:
        send({"type": "error", "kind": "permanent", "message": str(exc)})
    except RetryableError as exc:
        send({"type": "error", "kind": "retryable", "message": str(exc)})
    except MemoryError:
        send({"type": "error", "kind": "retryable", "message": "Out of memory in the model process"})
    except Exception as exc:  # keep the root cause; the parent decides
        send({"type": "error", "kind": "retryable", "message": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
