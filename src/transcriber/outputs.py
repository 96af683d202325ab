"""Transcript files: pure renderers of txt/srt/vtt/json, and one atomic writer."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath


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
    source = Path(file_path)
    try:
        relative = source.resolve().relative_to(watch_dir.resolve())
    except (ValueError, OSError):
        relative = PurePath(source.name)  # type: ignore[assignment]
    return output_dir / Path(relative).parent / source.stem


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
