"""One transcript segment, the same value from the model process to the output files.

It is converted only at the edges: to and from a JSON object on the model process's
pipe (``to_wire``/``from_wire``) and to and from a row of ``segments`` in the
database (``lifecycle``). The transcript text is built here, once
(``transcript_text``), so ``recordings.transcript``, the ``.txt`` file and
``transcribe FILE`` agree word for word.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

Word = tuple[float, float, str, float]  # start, end, word, probability


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    speaker: str | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    words: tuple[Word, ...] | None = None  # when word timestamps are on

    def to_wire(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "speaker": self.speaker,
            "avg_logprob": self.avg_logprob,
            "no_speech_prob": self.no_speech_prob,
            "words": [list(w) for w in self.words] if self.words else None,
        }

    def shifted(self, seconds: float) -> Segment:
        """The same segment ``seconds`` later (a piece's time as the whole call's)."""
        if not seconds:
            return self
        words = tuple((a + seconds, b + seconds, w, p) for a, b, w, p in self.words) if self.words else self.words
        return replace(self, start=self.start + seconds, end=self.end + seconds, words=words)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Segment:
        return cls(
            float(data["start"]),
            float(data["end"]),
            str(data["text"]),
            data.get("speaker"),
            data.get("avg_logprob"),
            data.get("no_speech_prob"),
            words_from(data.get("words")),
        )

    def words_json(self) -> str | None:
        """The words as stored in the database (a JSON array), or ``None``."""
        return json.dumps([list(w) for w in self.words]) if self.words else None


def words_from(value: str | Iterable[Sequence[Any]] | None) -> tuple[Word, ...] | None:
    """Words from their JSON text (database) or a list of lists (wire)."""
    if not value:
        return None
    items = json.loads(value) if isinstance(value, str) else value
    return tuple((float(w[0]), float(w[1]), str(w[2]), float(w[3])) for w in items) or None


def spoken(segments: Iterable[Segment]) -> list[Segment]:
    """The segments that hold words, their text stripped, in order."""
    return [replace(s, text=s.text.strip()) for s in segments if s.text.strip()]


def transcript_text(segments: Iterable[Segment]) -> str:
    """The transcript as one text: ``speaker: words`` lines for a call split by side, else one paragraph."""
    lines = spoken(segments)
    if any(s.speaker for s in lines):
        return "\n".join(f"{s.speaker}: {s.text}" if s.speaker else s.text for s in lines)
    return " ".join(s.text for s in lines)
