"""What a file says it holds (``probe_duration``): a truncated WAV states its header's length, not the bytes left."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from speech import write_audio
from transcriber.audio import check_complete, decode, probe_duration
from transcriber.errors import PermanentError


def riff_wav(
    path: Path, *, data_size: int, payload: bytes, format_code: int = 1, rate: int = 8000, width: int = 2,
    chunks: bytes = b"",
) -> Path:  # fmt: skip
    """A mono WAV whose header states ``data_size`` bytes of audio, holding ``payload`` (and ``chunks`` before it)."""
    fmt = struct.pack("<HHIIHH", format_code, 1, rate, rate * width, width, 8 * width)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + chunks + b"data" + struct.pack("<I", data_size)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body) + len(payload)) + body + payload)
    return path


def truncated(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def test_a_truncated_wav_states_what_its_header_says(tmp_path: Path) -> None:
    wav = write_audio(tmp_path / "call.wav", np.zeros(16000 * 172, dtype=np.float32))
    assert probe_duration(str(wav)) == pytest.approx(172.0, abs=0.01)
    truncated(wav, 0.4)
    assert probe_duration(str(wav)) == pytest.approx(172.0, abs=0.01)  # FFmpeg alone says 68.8


def test_a_truncated_wav_is_an_incomplete_decode(tmp_path: Path) -> None:
    wav = truncated(write_audio(tmp_path / "call.wav", np.zeros(16000 * 172, dtype=np.float32)), 0.4)
    decoded_seconds = len(decode(str(wav))) / 16000
    with pytest.raises(PermanentError, match=r"^Incomplete decode: got 1\.1 of 2\.9 min \(the file is truncated"):
        check_complete(decoded_seconds, probe_duration(str(wav)))


@pytest.mark.parametrize(
    ("case", "format_code", "width", "data_size", "chunks", "expected"),
    [
        ("PCM, the header's length", 1, 2, 16000 * 10, b"", 10.0),
        # What phone systems write; the wave module refuses it. A LIST chunk of odd size is padded to even.
        ("mu-law after a LIST chunk", 7, 1, 8000 * 10, b"LIST" + struct.pack("<I", 5) + b"abcde\0", 10.0),
        ("size never written (0)", 1, 2, 0, b"", 4.0),  # unknown: FFmpeg's count of what is there
        ("size never written (0xFFFFFFFF)", 1, 2, 0xFFFFFFFF, b"", 4.0),
    ],
)
def test_wav_headers(
    tmp_path: Path, case: str, format_code: int, width: int, data_size: int, chunks: bytes, expected: float
) -> None:
    payload = b"\0" * (8000 * width * 4)  # 4 s are there
    wav = riff_wav(
        tmp_path / "call.wav", data_size=data_size, payload=payload, format_code=format_code, width=width, chunks=chunks
    )
    assert probe_duration(str(wav)) == pytest.approx(expected, abs=0.01), case


def test_other_containers_and_non_audio(tmp_path: Path) -> None:
    flac = write_audio(tmp_path / "call.flac", np.zeros(16000 * 3, dtype=np.float32))
    assert probe_duration(str(flac)) == pytest.approx(3.0, abs=0.05)
    (tmp_path / "notes.wav").write_bytes(b"RIFF\x10\0\0\0WAVE")  # a header and nothing else
    assert probe_duration(str(tmp_path / "notes.wav")) is None
    (tmp_path / "text.wav").write_text("not audio\n" * 20)
    assert probe_duration(str(tmp_path / "text.wav")) is None
