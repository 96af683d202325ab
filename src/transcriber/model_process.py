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
from typing import IO, Any

from transcriber.errors import PermanentError, RetryableError


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
    global _batched
    options = dict(options)
    batch_size = int(options.pop("batch_size", 0) or 0)
    if batch_size <= 0:
        return model.transcribe, options
    if _batched is None:
        from faster_whisper import BatchedInferencePipeline

        _batched = BatchedInferencePipeline(model)
    options.update(batch_size=batch_size, vad_filter=True)  # the batched pipeline chunks by voice activity
    return _batched.transcribe, options


def _serve(out: IO[str], model: Any, request: dict[str, Any]) -> None:
    from transcriber.audio import SAMPLE_RATE, decode

    try:
        samples = decode(request["path"])
        duration = samples.shape[0] / SAMPLE_RATE
        _send(out, {"type": "info", "duration": duration})
        offset = float(request.get("start") or 0.0)
        rest = samples[int(offset * SAMPLE_RATE) :]
        language = None
        probability = None
        if rest.shape[0] >= SAMPLE_RATE // 10:
            transcribe, options = _transcriber(model, request["options"])
            segments, info = transcribe(rest, **options)
            language, probability = info.language, info.language_probability
            for seg in segments:
                _send(
                    out,
                    {"type": "segment", "start": offset + seg.start, "end": offset + seg.end, "text": seg.text},
                )
        _send(out, {"type": "done", "language": language, "language_probability": probability, "rss_mb": _rss_mb()})
    except PermanentError as exc:
        _send(out, {"type": "error", "kind": "permanent", "message": str(exc)})
    except RetryableError as exc:
        _send(out, {"type": "error", "kind": "retryable", "message": str(exc)})
    except MemoryError:
        _send(out, {"type": "error", "kind": "retryable", "message": "Out of memory in the model process"})
    except Exception as exc:  # keep the root cause; the parent decides
        _send(out, {"type": "error", "kind": "retryable", "message": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
