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


def _serve(out: IO[str], model: Any, request: dict[str, Any], voices: _Speakers | None = None) -> None:
    """Answer one request; every reply carries the request's id (the parent drops any other)."""
    from transcriber.audio import SAMPLE_RATE, check_complete, decode_sides, probe_duration
    from transcriber.decoding import decode

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
        # Earlier attempts' segments, as the time they cover: [start, end, speaker] (the text does not matter here).
        previous = [Segment(float(a), float(b), "(saved)", who) for a, b, who in request.get("previous") or []]
        diarize = request.get("diarize") if len(sides) == 1 else None
        if diarize:  # the turns are given to words by their own times: keep them (found anyway by default)
            options["word_timestamps"] = True
        summary = decode(
            model,
            sides,
            options,
            lambda segment: send({"type": "segment", **segment.to_wire()}),
            start=float(request.get("start") or 0.0),
            previous=previous,
            speakers=speakers,
            first_piece=request.get("first_piece"),
            on_reached=lambda seconds: send({"type": "reached", "seconds": seconds}),
        )
        if diarize and diarize.get("find", True):
            send({"type": "diarizing"})
            send((voices or _Speakers(0)).turns(sides[0], int(diarize.get("max_speakers") or 2)))
        send(
            {
                "type": "done",
                "language": summary.language,
                "language_probability": summary.language_probability,
                "speech": [[g.start, g.end, g.speaker] for g in summary.speech],
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
