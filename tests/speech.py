"""Test audio made on the spot: espeak-ng speaks known sentences, PyAV encodes them.

Used by the tests (and the benchmark), never shipped: the product reads real calls.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
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


def speak(text: str, *, voice: str = "en-us", speed: int = 150) -> np.ndarray:
    """Speech for ``text`` as 16 kHz mono float32."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text],
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


def write_audio(path: Path, samples: np.ndarray, *, rate: int = 16000) -> Path:
    """Encode mono float32 samples; the container follows the suffix (.m4a = AAC, .wav, .flac)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    codec = {".m4a": "aac", ".mp4": "aac", ".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame"}[suffix]
    fmt = {".m4a": "mp4", ".mp4": "mp4"}.get(suffix)
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame_size = 1024
        for start in range(0, len(pcm), frame_size):
            chunk = pcm[start : start + frame_size].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
