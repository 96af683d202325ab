"""Test audio made on the spot: espeak-ng speaks known sentences, PyAV encodes them.

Used by the tests (and the benchmark), never shipped: the product reads real calls.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SENTENCES = [
    "The quarterly invoice was sent to the customer on Monday morning.",
    "Please call me back about the delivery of the new printer.",
    "Our office is closed on the weekend but open again on Tuesday.",
    "The technician will arrive between nine and eleven tomorrow.",
    "Thank you for calling, your order number is ready for pickup.",
    "We need to reschedule the meeting with the insurance company.",
]


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, *, voice: str = "en-us", speed: int = 150, pitch: int = 50) -> np.ndarray:
    """Speech for ``text`` as 16 kHz mono float32."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(wav)) as handle:
            rate = handle.getframerate()
            pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16)
    samples = pcm.astype(np.float32) / 32768.0
    if rate != 16000:
        positions = np.linspace(0, len(samples) - 1, int(len(samples) * 16000 / rate))
        samples = np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)
    return samples


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype=np.float32)


def conversation(sentences: Sequence[str], *, pause: float = 0.8) -> np.ndarray:
    parts: list[np.ndarray] = []
    for sentence in sentences:
        parts.extend([speak(sentence), silence(pause)])
    return np.concatenate(parts)


def long_speech(min_seconds: float) -> np.ndarray:
    """Cycle the sentences until the audio is at least ``min_seconds`` long."""
    one_round = conversation(SENTENCES)
    repeats = int(np.ceil(min_seconds * 16000 / len(one_round)))
    return np.concatenate([one_round] * repeats)


def tone(seconds: float, hz: float = 440.0, level: float = 0.3) -> np.ndarray:
    """A steady tone: a stand-in for hold music or a ringing line."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, *, rate: int = 16000, right: np.ndarray | None = None,
                faststart: bool = False) -> Path:  # fmt: skip
    """Encode float32 samples (two channels when ``right`` is given); the container follows the suffix.

    ``faststart`` puts an m4a's index first, as phone recorders do, so a truncated file still opens.
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    codec = {".m4a": "aac", ".mp4": "aac", ".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame"}[suffix]
    fmt = {".m4a": "mp4", ".mp4": "mp4"}.get(suffix)
    layout = "mono" if right is None else "stereo"
    if right is not None:
        length = max(len(samples), len(right))
        samples = np.stack([np.pad(samples, (0, length - len(samples))), np.pad(right, (0, length - len(right)))])
    else:
        samples = samples.reshape(1, -1)
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        frame_size = 1024
        for start in range(0, pcm.shape[1], frame_size):
            chunk = np.ascontiguousarray(pcm[:, start : start + frame_size].T).reshape(1, -1)  # interleaved s16
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# Distinct sentences, each with two words of its own ("a|b"): a transcript holds each sentence once and in this
# order, or something was lost or repeated at a seam between attempts. Two words, so that one misheard word
# (tiny.en on a synthetic voice) is not taken for a lost sentence.
KEYED_SENTENCES = [
    ("elephant|zoo", "The elephant at the zoo was moved to a bigger field last spring."),
    ("invoice|accounts", "I sent the invoice twice but the accounts team never received it."),
    ("kitchen|entrance", "We are renovating the kitchen so please use the side entrance."),
    ("passport|booking", "Bring your passport and a printed copy of the booking confirmation."),
    ("guitar|band", "My brother plays the guitar in a small band on Friday nights."),
    ("hospital|appointment", "The hospital called to confirm the appointment for next Thursday."),
    ("mortgage|bank", "Our bank offered a lower rate on the mortgage if we switch today."),
    ("umbrella|rain", "Take an umbrella because heavy rain is expected this afternoon."),
    ("warehouse|parcel", "The parcel left the warehouse and should arrive before noon."),
    ("dentist|car", "I have to cancel the dentist because my car broke down again."),
    ("chocolate|cake", "She ordered a chocolate cake for the party on Saturday evening."),
    ("password|anyone", "Never share your password with anyone who calls you on the phone."),
    ("airport|shuttle", "The shuttle to the airport leaves every thirty minutes from the hotel."),
    ("library|books", "Return the books to the library before the end of the month."),
    ("engineer|heating", "An engineer will inspect the heating system on Wednesday morning."),
    ("vacation|lake", "We booked a short vacation by the lake for the first week of July."),
    ("contract|parties", "The new contract must be signed by both parties before we start."),
    ("football|park", "The children played football in the park until sunset."),
    ("restaurant|station", "Let us meet at the Italian restaurant next to the train station."),
    ("furniture|delivery", "The furniture delivery was delayed until the middle of next week."),
]


def keyed_call(count: int = len(KEYED_SENTENCES)) -> tuple[np.ndarray, list[str]]:
    """A call of ``count`` different sentences; returns the audio and their keywords in order."""
    chosen = KEYED_SENTENCES[:count]
    return conversation([sentence for _, sentence in chosen], pause=0.7), [word for word, _ in chosen]


def keywords_in_order_once(transcript: str, words: Sequence[str]) -> list[str]:
    """Problems found: keywords missing, repeated, or out of order (empty list = all good)."""
    import re

    found = re.findall(r"[a-z]+", transcript.lower())
    problems = []
    positions = []
    for alternatives in words:
        hits = max(([i for i, w in enumerate(found) if w == word] for word in alternatives.split("|")), key=len)
        if len(hits) != 1:
            problems.append(f"{alternatives} x{len(hits)}")
        else:
            positions.append(hits[0])
    if positions != sorted(positions):
        problems.append("out of order")
    return problems


# Recorded human voices in shared/audio (see its README): file, channel (None: mono), what is said.
REAL_VOICES = [
    (
        "jfk.flac",
        None,
        "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    ),  # noqa: E501
    (
        "stereo_diarization.wav",
        0,
        "He began a confused complaint against the wizard, who had vanished behind the curtain on the left.",
    ),  # noqa: E501
    ("stereo_diarization.wav", 1, "The horizon seems extremely distant."),
]


@dataclass(frozen=True)
class Said:
    """One sentence placed in a built call: where it is (seconds) and its words."""

    start: float
    end: float
    text: str


def real_voice(folder: Path, name: str, channel: int | None) -> np.ndarray:
    """One recorded voice at 16 kHz, its leading and trailing silence trimmed (0.1 s kept)."""
    from transcriber.audio import decode, decode_sides

    samples = decode(str(folder / name)) if channel is None else decode_sides(str(folder / name), "split")[channel]
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[max(loud[0] - 1600, 0) : loud[-1] + 1600]


def at_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Played ``factor`` times as fast (pitch follows, as on a tape)."""
    n = int(len(samples) / factor)
    return np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples).astype(np.float32)


def real_voice_call(folder: Path, seconds: float, *, seed: int, hold: float = 20.0) -> tuple[np.ndarray, list[Said]]:
    """A call of at least ``seconds`` of the recorded voices (speeds 0.9-1.1, pauses 0.3-4 s, never the same
    sentence twice in a row) with a quiet hold section of ``hold`` seconds half-way; returns audio and truth."""
    import random

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    voices = [(real_voice(folder, name, channel), text) for name, channel, text in REAL_VOICES]
    parts: list[np.ndarray] = []
    said: list[Said] = []
    at, last = 0.0, -1
    while at < seconds:
        if hold and at > seconds / 2:
            parts.append((0.003 * noise.standard_normal(int(hold * 16000))).astype(np.float32))  # a quiet line
            at, hold = at + hold, 0.0
        index = rng.choice([i for i in range(len(voices)) if i != last])
        last = index
        voice = at_speed(voices[index][0], rng.uniform(0.9, 1.1))
        parts.append(voice)
        said.append(Said(at, at + len(voice) / 16000, voices[index][1]))
        at += len(voice) / 16000
        pause = rng.uniform(0.3, 4.0)
        parts.append(silence(pause))
        at += pause
    return np.concatenate(parts), said


def sentences_missing(said: Sequence[Said], segments: Sequence[object], *, share: float = 0.6) -> list[Said]:
    """The sentences of which fewer than ``share`` of the words appear in the segments overlapping them.

    ``segments`` are anything with ``start``, ``end`` and ``text`` (ours or faster-whisper's).
    """
    import re

    def words(text: str) -> list[str]:
        return re.findall(r"[a-z']+", text.lower())

    missing = []
    for sentence in said:
        near = " ".join(
            s.text  # type: ignore[attr-defined]
            for s in segments
            if s.end > sentence.start - 0.5 and s.start < sentence.end + 0.5  # type: ignore[attr-defined]
        )
        heard, wanted = set(words(near)), words(sentence.text)
        if sum(w in heard for w in wanted) < share * len(wanted):
            missing.append(sentence)
    return missing
