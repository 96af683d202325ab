"""Transcript files: pure renderers of txt/srt/vtt/json, and one atomic writer."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from transcriber import pii
from transcriber.coverage import Coverage
from transcriber.segments import Segment, spoken, transcript_text
from transcriber.speakers import Figures


@dataclass(frozen=True)
class TranscriptDoc:
    """Everything an output file needs, independent of the database."""

    source: str
    segments: Sequence[Segment]
    language: str | None
    duration: float | None
    model: str
    coverage: Coverage | None = None  # speech heard by VAD and the stretches of it without text
    speakers: Figures | None = None  # talk time, turns, overlap, silence (mono calls diarized, or two sides)
    call: dict[str, Any] | None = None  # the call's facts from its file name (phone_number, call_started_at, ...)

    def lines(self) -> list[Segment]:
        """The segments that hold words, stripped, in order."""
        return spoken(self.segments)

    @property
    def text(self) -> str:
        return transcript_text(self.segments)


def format_timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<sep>mmm``; hours keep counting past 99 minutes (``01:02:03,456``)."""
    millis = max(int(round(seconds * 1000)), 0)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def render_txt(doc: TranscriptDoc) -> str:
    """One line per segment; ``caller: ...`` when the call's sides were transcribed apart."""
    return "".join(f"{line.speaker}: {line.text}\n" if line.speaker else f"{line.text}\n" for line in doc.lines())


def render_srt(doc: TranscriptDoc) -> str:
    blocks = []
    for number, line in enumerate(doc.lines(), start=1):
        text = " ".join(line.text.split())  # a blank line would end the SRT block early
        text = f"[{line.speaker}] {text}" if line.speaker else text
        blocks.append(f"{number}\n{format_timestamp(line.start, ',')} --> {format_timestamp(line.end, ',')}\n{text}\n")
    return "\n".join(blocks)


def render_vtt(doc: TranscriptDoc) -> str:
    cues = []
    for line in doc.lines():
        text = vtt_escape(line.text)
        if line.speaker:  # WebVTT voice spans
            text = f"<v {vtt_escape(line.speaker)}>{text}"
        cues.append(f"{format_timestamp(line.start, '.')} --> {format_timestamp(line.end, '.')}\n{text}\n")
    return "WEBVTT\n\n" + "\n".join(cues)


def vtt_escape(text: str) -> str:
    """Cue text as WebVTT reads it: ``&``, ``<``, ``>`` as character references, no blank line.

    A bare ``<`` opens a tag and ``&`` a reference (players drop or garble the words); a blank line ends the cue.
    """
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "\n".join(part for part in escaped.splitlines() if part.strip())


def render_json(doc: TranscriptDoc) -> str:
    segments = []
    for line in doc.lines():
        item: dict[str, Any] = {"start": round(line.start, 3), "end": round(line.end, 3), "text": line.text}
        if line.speaker:
            item["speaker"] = line.speaker
        if line.words:
            item["words"] = [
                {"start": round(w[0], 3), "end": round(w[1], 3), "word": w[2], "probability": w[3]} for w in line.words
            ]
        segments.append(item)
    body: dict[str, Any] = {
        "source": doc.source,
        "language": doc.language,
        "duration": doc.duration,
        "model": doc.model,
        "text": doc.text,
        "segments": segments,
    }
    if doc.coverage is not None:
        body["coverage"] = doc.coverage.to_json()
    if doc.speakers is not None:
        body["speakers"] = doc.speakers.to_json()
    if doc.call:
        body["call"] = doc.call
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


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
    stem = fit_file_name(pathmod.splitext(pathmod.basename(source))[0], reserve=_LONGEST_SUFFIX)
    return pathmod.join(output_dir, folder, stem) if folder else pathmod.join(output_dir, stem)


# One path component may hold 255 bytes on ext4, XFS, Btrfs and SMB shares; NTFS allows 255 UTF-16 units,
# never fewer than the UTF-8 bytes of the same name, so counting UTF-8 bytes is safe everywhere.
MAX_NAME_BYTES = 255
_LONGEST_SUFFIX = max(len(f".{fmt}".encode()) for fmt in RENDERERS)


def fit_file_name(stem: str, *, reserve: int) -> str:
    """``stem`` as it is when ``reserve`` more bytes (the extension) still fit in one file name.

    A longer one keeps its start, whole characters only, and ends in ``~`` and 12 hex digits of the
    SHA-256 of the whole stem, so two long names that start alike still get files of their own.
    """
    budget = MAX_NAME_BYTES - reserve
    if len(_name_bytes(stem)) <= budget:
        return stem
    tag = "~" + hashlib.sha256(_name_bytes(stem)).hexdigest()[:12]
    kept, used = [], len(tag)
    for char in stem:
        used += len(_name_bytes(char))
        if used > budget:
            break
        kept.append(char)
    return "".join(kept) + tag


def _name_bytes(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")  # os.fsdecode turns undecodable bytes into surrogates


def write_atomic(path: Path, content: str) -> None:
    """Write via a temp file in the same folder, then rename: readers never see half a file.

    The file gets the permissions of any file this process creates (0666 less the umask), as
    ``open()`` would give it: the operator's umask decides who may read transcripts.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_temp(folder: Path) -> tuple[int, Path]:
    """A new hidden file with a short name of fixed length (whatever the length of the target's).

    Created with mode 0666 for the kernel to apply the umask: ``mkstemp`` makes 0600, and reading the
    umask (``os.umask`` sets it to read it) races with the other threads of a worker.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
    while True:
        tmp = folder / f".{secrets.token_hex(8)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # 64 random bits: only ever by chance
            continue


def write_outputs(
    doc: TranscriptDoc, stem: Path, formats: Sequence[str], *, redact: str = "off", region: str = ""
) -> list[Path]:
    """Write each format next to ``stem``; returns the paths written.

    With ``redact`` (``REDACT``: ``numbers`` or ``all``) each format also gets a redacted copy beside it,
    ``<stem>.redacted.<fmt>`` (``redacted_document``); the originals are the same either way.
    """
    written = []
    copies = [(doc, "")] if redact == "off" else [(doc, ""), (redacted_document(doc, redact, region), ".redacted")]
    for shown, suffix in copies:
        for fmt in formats:
            path = stem.with_name(f"{stem.name}{suffix}.{fmt}")
            write_atomic(path, RENDERERS[fmt](shown))
            written.append(path)
    return written


def redacted_document(doc: TranscriptDoc, level: str, region: str = "") -> TranscriptDoc:
    """``doc`` as its redacted copy shows it (``pii``: ``numbers`` or ``all``); ``doc`` itself is unchanged.

    The segments are masked (``pii.redact_segments``: times and speakers kept, words of a changed segment
    dropped), and so is the text built from them. The call's number from the file name is masked in ``call``
    and in ``source``; at ``all`` the contact named there too. ``region`` is ``PHONE_REGION``.
    """
    if level == "off":
        return doc
    source = pii.redact(doc.source, "numbers", region)
    call = dict(doc.call) if doc.call else None
    if call is not None:
        if call.get("phone_number"):
            source = source.replace(str(call["phone_number"]), pii.TOKENS[pii.PHONE])
            call["phone_number"] = pii.TOKENS[pii.PHONE]
        if level == "all" and call.get("contact"):
            source = source.replace(str(call["contact"]), "[name]")
            call["contact"] = "[name]"
    return replace(doc, source=source, segments=pii.redact_segments(doc.segments, level, region), call=call)
