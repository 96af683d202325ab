"""Audio at the edge: file checks and decoding, with errors that say what is wrong."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION: Windows refuses to open a file another program holds open.
_WINDOWS_IN_USE = (32, 33)


def in_use(exc: OSError) -> bool:
    """A file locked by another program (Windows) rather than one we may not read: it passes."""
    return getattr(exc, "winerror", None) in _WINDOWS_IN_USE


def check_readable(path: str) -> int:
    """Return the file's size, or raise why it cannot be transcribed."""
    try:
        size = os.stat(path).st_size
        if size:
            with open(path, "rb") as handle:  # stat works without read permission; open does not
                handle.read(1)
    except FileNotFoundError:
        raise PermanentError(f"File not found: {path} (moved or deleted after it was queued)") from None
    except PermissionError as exc:
        if in_use(exc):  # Windows: a copier, backup agent or virus scanner holds it for now
            raise RetryableError(f"File in use: {path} is locked by another program") from exc
        raise PermanentError(
            f"Permission denied: {path}: give the worker's account read access, then reset the recording"
        ) from exc
    except OSError as exc:  # a share that went away: may come back
        raise RetryableError(f"I/O error reading {path}: {exc}") from exc
    if size == 0:
        raise PermanentError(f"Empty file: {path} has 0 bytes")
    return size


# ---------------------------------------------------------------- the file a recording was registered with

# The content key of a file the watcher could not read: registered all the same (so it is not lost),
# keyed by path, size and mtime instead of its audio.
UNREAD_PREFIX = "unread:"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def unread_key(path: str, size: int, mtime_ns: int) -> str:
    """A 64-character content key for a file whose bytes could not be read."""
    digest = hashlib.sha256(os.fsencode(os.path.abspath(path)) + f"\0{size}\0{mtime_ns}".encode()).hexdigest()
    return UNREAD_PREFIX + digest[: 64 - len(UNREAD_PREFIX)]


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int


def file_state(path: str) -> FileState | None:
    """Size and modification time, or ``None`` if the file is gone."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return FileState(stat.st_size, stat.st_mtime_ns)


def is_inside(path: str, root: str, pathmod: Any = os.path) -> bool:
    """Whether ``path`` is ``root`` or below it (both absolute); ``pathmod`` is ntpath for Windows rules."""
    try:
        common = pathmod.commonpath([path, root])
    except ValueError:  # another drive on Windows, or one relative path
        return False
    return bool(pathmod.normcase(common) == pathmod.normcase(pathmod.normpath(root)))


def check_inside(path: str, root: str | os.PathLike[str]) -> None:
    """Refuse a file outside ``root`` once links are resolved: files are read only under WATCH_DIR."""
    if not is_inside(os.path.realpath(path), os.path.realpath(root)):
        raise PermanentError(
            f"Refused: {path} is outside WATCH_DIR ({root}); files are read only under the watched folder"
        )


def check_same_audio(path: str, *, size: int, content_key: str) -> FileState:
    """Check the file still holds the audio it was registered with; return its state for a later check."""
    check_readable(path)
    state = file_state(path)
    if state is None:
        raise PermanentError(f"File not found: {path} (moved or deleted after it was queued)")
    changed = state.size != size
    if not changed and not content_key.startswith(UNREAD_PREFIX):
        try:
            changed = sha256_of(path) != content_key
        except OSError as exc:
            raise RetryableError(f"I/O error reading {path}: {exc}") from exc
    if changed:
        raise PermanentError(
            f"File changed since it was registered: {path} now holds other audio ({state.size} bytes, was {size});"
            " the watcher registers the new audio as a recording of its own"
        )
    return state


def check_unchanged_since(path: str, before: FileState) -> None:
    """After transcribing: the file must not have been rewritten meanwhile (a deleted file is fine: it was read)."""
    after = file_state(path)
    if after is not None and after != before:
        raise PermanentError(
            f"File changed while it was being transcribed: {path} ({before.size} -> {after.size} bytes);"
            " this transcript is dropped and the watcher registers the new audio as a recording of its own"
        )


def probe_duration(path: str) -> float | None:
    """The duration the container states, in seconds (reads the header only); ``None`` if unknown.

    A WAV's is its RIFF header's: what the file should hold, so a truncated one is found out by ``check_complete``.
    """
    import av

    stated = _wav_header_seconds(path)
    if stated is not None:
        return stated
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


# A data size a writer leaves when it never learnt the length (streaming to a pipe): no statement at all.
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)


def _wav_header_seconds(path: str) -> float | None:
    """What a RIFF/WAVE header states: its data chunk's size over its byte rate; ``None`` if not a WAV or unsaid.

    FFmpeg reports a WAV's duration from the bytes actually there, so a truncated file would pass for a
    complete shorter one. Read by hand rather than with ``wave``, which refuses the µ-law and A-law WAVs
    phone systems write.
    """
    import struct

    try:
        with open(path, "rb") as handle:
            riff = handle.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
                return None  # RF64 and other containers: PyAV's answer
            byte_rate = 0
            while len(header := handle.read(8)) == 8:  # chunks: "fmt ", then perhaps "LIST", "fact"..., "data"
                chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
                padded = size + size % 2
                if chunk == b"data":
                    return size / byte_rate if byte_rate and size not in _UNKNOWN_WAV_SIZES else None
                if chunk == b"fmt ":
                    fmt = handle.read(padded)
                    byte_rate = struct.unpack("<I", fmt[8:12])[0] if len(fmt) >= 12 else 0
                else:
                    handle.seek(padded, os.SEEK_CUR)
    except OSError:
        return None
    return None


def decode(path: str):  # type: ignore[no-untyped-def]
    """Decode to 16 kHz mono float32 (numpy), or raise ``PermanentError``."""
    import av

    check_readable(path)
    try:
        with av.open(path, metadata_errors="ignore") as container:
            has_audio = bool(container.streams.audio)
    except av.error.FFmpegError as exc:
        raise PermanentError(f"Unreadable audio: {_describe(exc)}") from None
    if not has_audio:
        raise PermanentError("Unreadable audio: the file has no audio track (a video without sound?)")
    samples = _decoded(path)
    if samples.size == 0:
        raise PermanentError("Unreadable audio: no audio samples decoded (no audio stream?)")
    return samples


def check_complete(decoded_seconds: float, stated_seconds: float | None) -> None:
    """A decode that stops well short of the container's stated duration is never passed off as complete."""
    if not stated_seconds:
        return
    tolerance = max(2.0, 0.01 * stated_seconds)
    if decoded_seconds < stated_seconds - tolerance:
        raise PermanentError(
            f"Incomplete decode: got {decoded_seconds / 60:.1f} of {stated_seconds / 60:.1f} min "
            "(the file is truncated or damaged; replace it and reset the recording)"
        )


def source_channels(path: str) -> int:
    """How many channels the file's first audio stream has (0 if unknown)."""
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            stream = next(iter(container.streams.audio), None)
            return int(stream.codec_context.channels) if stream is not None else 0
    except (av.error.FFmpegError, OSError, ValueError):
        return 0


def channels_differ(left, right) -> bool:  # type: ignore[no-untyped-def]
    """True when the two sides carry different audio (a two-channel call recorder), not one signal twice."""
    import numpy as np

    step = 8  # a subsample is plenty to tell "same signal" from "two speakers"
    a, b = left[::step].astype(np.float64), right[::step].astype(np.float64)
    energy_a, energy_b = float(np.dot(a, a)), float(np.dot(b, b))
    if energy_a == 0 or energy_b == 0:
        return energy_a != energy_b  # one side silent: the other side is a separate speaker
    correlation = float(np.dot(a, b)) / (energy_a * energy_b) ** 0.5
    return correlation < 0.95


def decode_sides(path: str, mode: str):  # type: ignore[no-untyped-def]
    """The audio to transcribe: ``[mono]``, or ``[left, right]`` for a two-channel call (``mode`` auto|mix|split)."""

    if mode == "mix" or source_channels(path) != 2:
        return [decode(path)]
    check_readable(path)
    left, right = _decoded(path, split_stereo=True)
    if mode == "split" or channels_differ(left, right):
        return [left, right]
    return [(left + right) / 2]


def _decoded(path: str, *, split_stereo: bool = False):  # type: ignore[no-untyped-def]
    """faster-whisper's decode, its errors sorted one way for mono and stereo alike.

    What the decoder cannot make sense of can never succeed (``PermanentError``); an
    I/O error (a share that went away) may pass (``RetryableError``); anything else
    keeps its type and is retried as an unexpected error by the attempt.
    """
    import av
    from faster_whisper.audio import decode_audio

    try:
        return decode_audio(path, sampling_rate=SAMPLE_RATE, split_stereo=split_stereo)
    except (av.error.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        raise PermanentError(f"Unreadable audio: {_describe(exc)}") from None
    except OSError as exc:
        raise RetryableError(f"I/O error reading {path}: {exc}") from exc


def _describe(exc: BaseException) -> str:
    """The decoder's own words, without FFmpeg's internal error number."""
    text = " ".join((str(exc).strip() or type(exc).__name__).split())
    return re.sub(r"^\[Errno -?\d+\]\s*", "", text)
