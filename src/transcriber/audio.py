"""Audio at the edge: file checks and decoding, with errors that say what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

from transcriber.errors import PermanentError, RetryableError

SAMPLE_RATE = 16000

MEDIA_EXTENSIONS = frozenset(
    [
        ".m4a",
        ".mp3",
        ".wav",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".aac",
        ".wma",
        ".amr",
        ".3gp",
        ".3ga",
        ".aiff",
        ".aif",
        ".caf",
        ".webm",
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".avi",
        ".wmv",
        ".mpeg",
        ".mpg",
    ]
)


def is_media_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


def check_readable(path: str) -> int:
    """Return the file's size, or raise why it cannot be transcribed."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise PermanentError(f"File not found: {path} (moved or deleted after it was queued)") from None
    except PermissionError as exc:
        raise PermanentError(f"Permission denied: {path}: give the worker's account read access") from exc
    except OSError as exc:  # a share that went away: may come back
        raise RetryableError(f"I/O error reading {path}: {exc}") from exc
    if size == 0:
        raise PermanentError(f"Empty file: {path} has 0 bytes")
    return size


def probe_duration(path: str) -> float | None:
    """The duration the container states, in seconds (reads the header only); ``None`` if unknown."""
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            if container.duration:
                return float(container.duration) / 1_000_000
            stream = next(iter(container.streams.audio), None)
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, OSError, ValueError, StopIteration):
        return None
    return None


def decode(path: str):  # type: ignore[no-untyped-def]
    """Decode to 16 kHz mono float32 (numpy), or raise ``PermanentError``."""
    import av
    from faster_whisper.audio import decode_audio

    check_readable(path)
    try:
        samples = decode_audio(path, sampling_rate=SAMPLE_RATE)
    except (av.error.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        raise PermanentError(f"Unreadable audio: {_describe(exc)}") from None
    except OSError as exc:
        raise RetryableError(f"I/O error reading {path}: {exc}") from exc
    if samples.size == 0:
        raise PermanentError("Unreadable audio: no audio samples decoded (no audio stream?)")
    return samples


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
