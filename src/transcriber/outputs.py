"""Transcript files: pure renderers of txt/srt/vtt/json, and one atomic writer."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class TranscriptDoc:
    """Everything an output file needs, independent of the database."""

    source: str
    segments: Sequence[tuple[float, float, str]]
    language: str | None
    duration: float | None
    model: str


def format_timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<sep>mmm``; hours keep counting past 99 minutes (``01:02:03,456``)."""
    millis = max(int(round(seconds * 1000)), 0)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def render_txt(doc: TranscriptDoc) -> str:
    return "".join(f"{text.strip()}\n" for _, _, text in doc.segments if text.strip())


def render_srt(doc: TranscriptDoc) -> str:
    blocks = []
    for number, (start, end, text) in enumerate(_spoken(doc), start=1):
        blocks.append(f"{number}\n{format_timestamp(start, ',')} --> {format_timestamp(end, ',')}\n{text}\n")
    return "\n".join(blocks)


def render_vtt(doc: TranscriptDoc) -> str:
    cues = [
        f"{format_timestamp(start, '.')} --> {format_timestamp(end, '.')}\n{text}\n"
        for start, end, text in _spoken(doc)
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def render_json(doc: TranscriptDoc) -> str:
    body = {
        "source": doc.source,
        "language": doc.language,
        "duration": doc.duration,
        "model": doc.model,
        "text": " ".join(text.strip() for _, _, text in doc.segments if text.strip()),
        "segments": [
            {"start": round(start, 3), "end": round(end, 3), "text": text} for start, end, text in _spoken(doc)
        ],
    }
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


def _spoken(doc: TranscriptDoc) -> list[tuple[float, float, str]]:
    return [(start, end, text.strip()) for start, end, text in doc.segments if text.strip()]


RENDERERS: dict[str, Callable[[TranscriptDoc], str]] = {
    "txt": render_txt,
    "srt": render_srt,
    "vtt": render_vtt,
    "json": render_json,
}


def output_stem(output_dir: Path, watch_dir: Path, file_path: str) -> Path:
    """Where a recording's outputs go: named after the file, mirroring its subfolder of WATCH_DIR.

    A file outside WATCH_DIR (registered by hand) goes to the top of OUTPUT_DIR.
    """
    return Path(output_stem_str(str(output_dir), str(watch_dir), file_path, os.path))


def output_stem_str(output_dir: str, watch_dir: str, file_path: str, pathmod: ModuleType) -> str:
    r"""``output_stem`` on plain strings, for one path flavour (``ntpath`` or ``posixpath``).

    Works for drive letters, spaces and UNC shares (``\\server\recordings``); on Windows the
    folder comparison ignores case, as the file system does. Tested on Linux with ``ntpath``.
    """
    source = pathmod.abspath(file_path) if pathmod is os.path else pathmod.normpath(file_path)
    root = pathmod.abspath(watch_dir) if pathmod is os.path else pathmod.normpath(watch_dir)
    if pathmod is os.path:  # follow links the way the watcher saw the folder
        source, root = pathmod.realpath(source), pathmod.realpath(root)
    try:
        relative = pathmod.relpath(source, root)
    except ValueError:  # another drive or share
        relative = pathmod.basename(source)
    if relative == pathmod.pardir or relative.startswith(pathmod.pardir + pathmod.sep):
        relative = pathmod.basename(source)
    folder = pathmod.dirname(relative)
    stem = pathmod.splitext(pathmod.basename(source))[0]
    return pathmod.join(output_dir, folder, stem) if folder else pathmod.join(output_dir, stem)


def write_atomic(path: Path, content: str) -> None:
    """Write via a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; transcripts are for every reader of the folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(doc: TranscriptDoc, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write each format next to ``stem``; returns the paths written."""
    written = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        write_atomic(path, RENDERERS[fmt](doc))
        written.append(path)
    return written
