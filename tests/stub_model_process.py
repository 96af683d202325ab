"""A stand-in for ``transcriber.model_process`` that speaks the same JSON-lines protocol, with no model.

Each ``transcribe`` request is answered with ``info``, then ``segments`` segments whose text
names the request's file (``<stem> 0``, ``<stem> 1``, ...), ``pause`` seconds apart, then
``done``, echoing the request's id. Like the real process it finishes one request before it
reads the next, and keeps writing whether or not anyone reads. ``stale: true`` first sends a
reply for another request id, as a process still talking about an old request would.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def send(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    config = json.loads(sys.stdin.readline())
    send({"type": "ready", "load_seconds": 0.0, "pid": os.getpid(), "model": config["model"]})
    for line in sys.stdin:
        request = json.loads(line)
        options, rid, stem = request.get("options") or {}, request.get("id"), Path(request["path"]).stem
        count, pause = int(options.get("segments", 5)), float(options.get("pause", 0.0))
        if options.get("stale"):
            send({"type": "segment", "id": "an-old-request", "start": 0, "end": 1, "text": "stale words"})
        send({"type": "info", "id": rid, "duration": float(count), "channels": 1})
        for i in range(count):
            time.sleep(pause)
            send({"type": "segment", "id": rid, "start": float(i), "end": i + 1.0, "text": f"{stem} {i}"})
        send({"type": "done", "id": rid, "language": "en", "language_probability": 1.0})


if __name__ == "__main__":
    main()
