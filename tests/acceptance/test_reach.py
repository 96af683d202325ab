"""Transcripts reach people (issue 14), end to end: real watcher, worker, beat and exporter processes, real
Postgres and Redis, a real model on real speech, a real HTTP receiver and Prometheus' own text parser.

One call asks for a refund and reads a card number aloud; one file is not audio. Then:
- the receiver gets ``recording.completed`` and ``recording.failed`` (root cause, retry_count), signed, after
  refusing the first deliveries (retried with backoff, same event_id and bytes);
- ``transcriber search refund`` finds the call with the offset of the hit;
- ``transcriber metrics`` serves counts a Prometheus parser reads back;
- ``REDACT=numbers`` wrote ``.redacted`` copies without the card number; the originals keep it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services import free_port
from speech import conversation, write_audio

pytestmark = pytest.mark.slow

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")
SECRET = "s3cret-for-the-test"
CARD_WORDS = "four five three two, zero one five one, one two eight three, zero three six six"  # passes Luhn
CARD_DIGITS = "4532015112830366"


class Receiver:
    """A webhook receiver that answers 503 to its first ``refuse`` requests, then 200; it keeps every request."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    refused = len(receiver.requests) <= receiver.refuse
                self.send_response(503 if refused else 200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/transcriber?token=abc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[dict[str, object]]:
        """The bodies of the deliveries answered 200, each checked against its signature."""
        with self.lock:
            taken = self.requests[self.refuse :]
        bodies = []
        for headers, body in taken:
            stamp = headers["x-transcriber-timestamp"]
            expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["x-transcriber-signature"], f"sha256={expected}"), headers
            bodies.append(json.loads(body))
        return bodies


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(refuse=2)
    yield server
    server.server.shutdown()


def transcriber(pipeline, *args: str) -> str:
    done = subprocess.run(
        [TRANSCRIBER, *args], env=pipeline.env, cwd=pipeline.tmp, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"transcriber {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_a_finished_call_is_pushed_searchable_counted_and_redacted(pipeline, receiver: Receiver) -> None:
    pipeline.env.update(
        WEBHOOK_URL=receiver.url, WEBHOOK_SECRET=SECRET, WEBHOOK_BACKOFF_SECONDS="0.2",
        WEBHOOK_BACKOFF_MAX_SECONDS="0.5", REDACT="numbers",
    )  # fmt: skip
    pipeline.start("worker", "--concurrency=1")
    pipeline.start("beat")
    pipeline.start("watch")
    name = "Call recording +18134353769_200301_171119.m4a"
    said = [
        "Hello, I would like a refund for my last order.",
        f"My card number is {CARD_WORDS}.",
        "Thank you, goodbye.",
    ]
    write_audio(pipeline.watch_dir / name, conversation(said))
    (pipeline.watch_dir / "not audio.m4a").write_bytes(os.urandom(4000))
    pipeline.wait_for("both files to settle", lambda: pipeline.all_settled(2))
    pipeline.wait_for("two accepted deliveries", lambda: len(receiver.accepted()) >= 2)

    # The completed row holds this call's own words, every sentence of it (the card as digits, words or both).
    [(transcript,)] = pipeline.query("SELECT transcript FROM recordings WHERE file_name = :n", n=name)
    heard = transcript.lower()
    # (tiny.en hears the last sentence's "thank you," as "and": its own word there is "goodbye")
    for words in (("like", "refund", "last", "order"), ("card", "number"), ("goodbye",)):
        assert all(word in heard for word in words), (words, transcript)
    assert CARD_DIGITS in digits_of(transcript), transcript

    # Webhooks: one event per state change, signed, retried through the refusals, same bytes each time.
    bodies = {b["event"]: b for b in receiver.accepted()}
    assert set(bodies) == {"recording.completed", "recording.failed"}
    done, failed = bodies["recording.completed"], bodies["recording.failed"]
    assert (done["file_name"], done["status"], done["retry_count"]) == (name, "completed", 0)
    assert done["call"]["phone_number"] == "+18134353769"
    assert done["duration_seconds"] > 5
    assert (failed["file_name"], failed["status"], failed["cause"]) == ("not audio.m4a", "failed", "unreadable")
    assert failed["error_message"].startswith("Unreadable audio: ")
    with receiver.lock:
        sent = [(h["x-transcriber-event-id"], body) for h, body in receiver.requests]
    for event_id, _ in sent[:2]:  # a refused delivery comes again with the same event_id and the same bytes
        assert len({body for eid, body in sent if eid == event_id}) == 1
        assert event_id in {str(b["event_id"]) for b in receiver.accepted()}
    [(pending,)] = pipeline.query("SELECT count(*) FROM webhook_events WHERE status <> 'delivered'")
    assert pending == 0
    assert "token=abc" not in pipeline.full_log("beat")  # the URL's secret part never reaches a log

    # Search: the word, where it was said, and the file.
    found = json.loads(transcriber(pipeline, "search", "refund", "--json"))
    [hit_recording] = found["recordings"]
    assert hit_recording["file_name"] == name
    [hit] = hit_recording["hits"]
    assert hit["at"] == "00:00:00" and "refund" in hit["text"].lower()
    assert json.loads(transcriber(pipeline, "search", "refund", "--status", "failed", "--json"))["recordings"] == []

    # Metrics: the exporter's page, read back by Prometheus' parser.
    port = free_port()
    pipeline.start("metrics", METRICS_PORT=str(port))
    page = pipeline.wait_for("the metrics page", lambda: scrape(port))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }
    assert samples[("transcriber_recordings", (("status", "completed"),))] == 1
    assert samples[("transcriber_recordings", (("status", "failed"),))] == 1
    assert samples[("transcriber_failures_total", (("cause", "unreadable"),))] == 1
    assert samples[("transcriber_attempts_total", (("outcome", "succeeded"),))] == 1
    assert samples[("transcriber_webhook_pending", ())] == 0
    assert samples[("transcriber_audio_seconds_total", ())] == pytest.approx(done["duration_seconds"], abs=0.01)
    assert samples[("transcriber_realtime_factor_count", ())] == 1

    # Redacted copies beside the originals; the originals untouched.
    stem = pipeline.output_dir / Path(name).stem
    original, redacted = Path(f"{stem}.txt").read_text(), Path(f"{stem}.redacted.txt").read_text()
    assert CARD_DIGITS in digits_of(original), original  # the model heard the card (as digits, words or both)
    assert CARD_DIGITS not in digits_of(redacted), redacted
    assert not any(group in digits_of(redacted) for group in ("4532", "0151", "1283", "0366")), redacted
    assert "refund" in redacted
    for ext in ("srt", "vtt", "json"):
        text = Path(f"{stem}.redacted.{ext}").read_text()
        spoken = "\n".join(line for line in text.splitlines() if "-->" not in line and '"start"' not in line
                           and '"end"' not in line)  # fmt: skip
        assert CARD_DIGITS not in digits_of(spoken), (ext, text)
        assert "0151" not in digits_of(spoken) and "1283" not in digits_of(spoken), (ext, text)


DIGIT_WORDS = {
    w: str(n) for n, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
}


def digits_of(text: str) -> str:
    """The digits said in ``text``, whether the model wrote them as digits or as words (``oh`` is zero)."""
    words = re.findall(r"[a-z]+|\d", text.lower())
    return "".join(DIGIT_WORDS.get(w, "0" if w == "oh" else w if w.isdigit() else "") for w in words)


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return None
