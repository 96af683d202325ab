"""Full-text search over transcript segments: ``transcriber search "refund" [filters]``.

The index is SQL the models do not describe (alembic/versions/0007_search.py): a GIN-indexed ``tsvector``
column on Postgres, an FTS5 table kept in step by triggers on SQLite. Both split text into runs of letters
and digits, lowercased, diacritics kept, no stemming, no stop words, so one query finds the same segments on
both. The user's query never reaches tsquery or FTS5 syntax as typed: ``parse_query`` keeps its words
(``[^\\W_]+``, lowercased) and builds either syntax from them.

Query language, the same on both databases:

- words are ANDed, and each matches the beginning of a word: ``refund`` finds refunds and refunded;
- ``"full refund"`` is a phrase (its words next to each other, each a beginning of a word, too), and so is a
  word with punctuation inside: ``it's``, ``follow-up``, ``a:b``;
- ``refund OR credit`` is either (``OR`` in capitals binds closer than the implicit AND:
  ``refund OR credit card`` is (refund or credit) and card); ``AND`` in capitals is allowed and changes nothing;
- ``-cancel`` leaves out segments with the word (a query needs at least one word that is not left out).

Everything matches within one segment. Results are recordings, newest call first (the call's start where the
file name gave it, else when it was registered: the time ``--since`` and ``--until`` filter on), each with its
first hits in time order and the number of them. Snippets and highlights are computed here, from the segment's
text, by the same function for both databases.
"""

from __future__ import annotations

import re
import textwrap
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnClause, Select, bindparam, column, func, literal_column, select, table
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.orm import Session

from transcriber.errors import TranscriberError
from transcriber.report import WIDTH, CallFilter, call_facts_of, format_call
from transcriber.tables import Recording
from transcriber.tables import Segment as SegmentRow

# What a word is, in the index and in the query: FTS5's unicode61 token characters (letters, digits), as
# Python's ``\w`` without the underscore.
WORD = re.compile(r"[^\W_]+")
_RAW = re.compile(r'-?"[^"]*"?|\S+')
SNIPPET_CHARS = 160  # the text shown around the first match of a long segment

Phrase = tuple[str, ...]


class SearchQueryError(TranscriberError):
    """The query cannot be searched for (it has no words to find); the message is one line for the user."""


@dataclass(frozen=True)
class Query:
    """A parsed query: every group must match (one of its phrases), no excluded phrase may."""

    groups: tuple[tuple[Phrase, ...], ...]
    excluded: tuple[Phrase, ...] = ()

    def tsquery(self) -> str:
        """Postgres ``tsquery`` syntax (to cast, not to parse with a dictionary): words are already lowercased."""
        return self._render(word="'{}':*", next_to=" <-> ", either=" | ", both=" & ", without=" & !")

    def fts5(self) -> str:
        """An FTS5 ``MATCH`` expression: every word a quoted prefix, phrases joined with ``+``."""
        return self._render(word='"{}"*', next_to=" + ", either=" OR ", both=" AND ", without=" NOT ")

    def _render(self, *, word: str, next_to: str, either: str, both: str, without: str) -> str:
        """The query in one syntax: how a word (a prefix) is written, and its four operators."""

        def phrase(words: Phrase) -> str:
            return next_to.join(word.format(w) for w in words)

        def any_of(phrases: Sequence[Phrase]) -> str:
            return "(" + either.join(phrase(p) for p in phrases) + ")"

        found = both.join(any_of(group) for group in self.groups)
        return found + (f"{without}{any_of(self.excluded)}" if self.excluded else "")

    def phrases(self) -> tuple[Phrase, ...]:
        """Every phrase that counts as a hit (what snippets highlight)."""
        return tuple(p for group in self.groups for p in group)


def parse_query(query: str) -> Query:
    """The words of ``query`` as a ``Query``; raises ``SearchQueryError`` when nothing is left to find.

    Never fails on odd input (``*``, ``a:b``, an unbalanced ``"``): characters that are not letters or
    digits only separate words.
    """
    groups: list[list[Phrase]] = []
    excluded: list[Phrase] = []
    join_next = False
    for raw in _RAW.findall(query):
        if raw in ("OR", "AND"):
            join_next = raw == "OR" and bool(groups)
            continue
        negated = raw.startswith("-")
        words = tuple(w.lower() for w in WORD.findall(raw))
        if not words:
            continue
        if negated:
            excluded.append(words)
        elif join_next:
            groups[-1].append(words)
        else:
            groups.append([words])
        join_next = False
    if not groups:
        said = " ".join(query.split())
        raise SearchQueryError(
            f"nothing to search for in {said!r}: give at least one word (letters or digits) that is not left out"
        )
    return Query(tuple(tuple(_unique(g)) for g in groups), tuple(_unique(excluded)))


def _unique(phrases: Sequence[Phrase]) -> list[Phrase]:
    return list(dict.fromkeys(phrases))


def find_matches(text: str, query: Query) -> tuple[tuple[int, int], ...]:
    """Character spans of ``text`` that the query's phrases match, in order, touching spans merged."""
    tokens = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(text)]
    marked = [False] * len(tokens)
    for phrase in query.phrases():
        n = len(phrase)
        for i in range(len(tokens) - n + 1):
            if all(tokens[i + k][2].startswith(word) for k, word in enumerate(phrase)):
                marked[i : i + n] = [True] * n
    spans: list[tuple[int, int]] = []
    for i, (start, end, _word) in enumerate(tokens):
        if not marked[i]:
            continue
        if spans and i > 0 and marked[i - 1] and _only_space_or_joiners(text[spans[-1][1] : start]):
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return tuple(spans)


def _only_space_or_joiners(between: str) -> bool:
    return len(between) <= 2  # "full refund", "follow-up", "it's": one phrase, one highlight


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Hit:
    """One matching segment: where in the call, who spoke, its text and the matched spans of it."""

    idx: int
    start: float
    end: float
    speaker: str | None
    text: str
    matches: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class RecordingHits:
    """One recording that matches, with its first hits in time order and how many segments match in all."""

    id: uuid.UUID
    file_name: str
    status: str
    duration_seconds: float | None
    when: datetime  # the call's start where known, else when it was registered (the order and the filter)
    call: dict[str, Any]  # report.call_facts_of
    hit_count: int
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class SearchResult:
    query: str
    recordings: tuple[RecordingHits, ...]
    more: bool  # more recordings match than ``limit``


def search(
    session: Session,
    query: str,
    *,
    call: CallFilter | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    statuses: Sequence[str] = (),
    speaker: str | None = None,
    limit: int = 20,
    hits_per_recording: int = 5,
) -> SearchResult:
    """Recordings whose segments match ``query``, newest call first, at most ``limit`` of them.

    ``call`` filters on the call's facts as ``list --phone/--contact/--called-since`` do; ``since`` (at or
    after) and ``until`` (before) on the call's start where known, else the registration time; ``statuses``
    on the recording's status (any, by default); ``speaker`` on the segment's speaker (any case).
    Raises ``SearchQueryError`` for a query without words, ``TranscriberError`` for a bad limit.
    """
    parsed = parse_query(query)
    if limit < 1 or hits_per_recording < 0:
        raise TranscriberError("--limit must be at least 1")
    if since is not None and until is not None and until <= since:
        raise TranscriberError("--until is not after --since: no call can match")
    backend = _Backend(session, parsed, speaker)
    when = func.coalesce(Recording.call_started_at, Recording.created_at)
    candidates = select(Recording.id).where(*(call.conditions() if call else ()))
    if statuses:
        candidates = candidates.where(Recording.status.in_(list(statuses)))
    if since is not None:
        candidates = candidates.where(when >= since)
    if until is not None:
        candidates = candidates.where(when < until)
    ids = backend.matching_recordings(session, candidates.order_by(when.desc(), Recording.id), limit + 1)
    more, ids = len(ids) > limit, ids[:limit]
    if not ids:
        return SearchResult(query, (), False)
    recordings = {r.id: r for r in session.scalars(select(Recording).where(Recording.id.in_(ids)))}
    hits: dict[uuid.UUID, list[Hit]] = {i: [] for i in ids}
    counts: dict[uuid.UUID, int] = dict.fromkeys(ids, 0)
    for row in session.execute(backend.first_hits(ids, hits_per_recording)):
        counts[row.recording_id] = int(row.total)
        if row.n <= hits_per_recording:
            hits[row.recording_id].append(
                Hit(row.idx, row.start, row.end, row.speaker, row.text, find_matches(row.text, parsed))
            )
    found = tuple(
        RecordingHits(
            id=i,
            file_name=recordings[i].file_name,
            status=recordings[i].status,
            duration_seconds=recordings[i].duration_seconds,
            when=recordings[i].call_started_at or recordings[i].created_at,
            call=call_facts_of(recordings[i]),
            hit_count=counts[i],
            hits=tuple(hits[i]),
        )
        for i in ids
    )
    return SearchResult(query, found, more)


def reindex(session: Session) -> str:
    """Build the search index again from the segments; returns what was done (``transcriber db reindex``).

    Needed on SQLite after a ``VACUUM``, which may renumber the rowids ``segments_fts`` points at (segments has
    no INTEGER PRIMARY KEY); harmless anywhere. On Postgres the generated column is always right: its GIN
    index is rebuilt.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(sql("INSERT INTO segments_fts(segments_fts) VALUES ('rebuild')"))
        return "rebuilt segments_fts from the segments"
    session.execute(sql("REINDEX INDEX ix_segments_search_vector"))
    return "rebuilt ix_segments_search_vector"


_FTS = table("segments_fts", column("rowid"))
_VECTOR: ColumnClause[Any] = literal_column("segments.search_vector")
# Postgres: above this many matching segments (the planner's estimate) a query walks the newest recordings
# instead of reading every match from the GIN index; a walk gives up after WALK_LIMIT recordings.
WALK_ABOVE = 5_000
WALK_LIMIT = 400


class _Backend:
    """The two SQL shapes of a match: a ``tsvector @@ tsquery`` on Postgres, FTS5 ``MATCH`` on SQLite."""

    def __init__(self, session: Session, query: Query, speaker: str | None) -> None:
        self.sqlite = session.get_bind().dialect.name == "sqlite"
        self.query = query
        self.speaker = speaker.strip().lower() if speaker and speaker.strip() else None

    def _matching(self, *columns: Any, indexed: bool = True, by_speaker: bool = True) -> Select[Any]:
        """Segments that match (and are the speaker's), with ``columns``.

        ``indexed=False`` (Postgres): the match as ``ts_match_vq``, which the planner cannot answer from the GIN
        index, for rows already narrowed to a few recordings by the primary key. Left to itself the planner ANDs
        the two indexes, and reads a common word's whole posting list once per recording.
        """
        if self.sqlite:
            rows = (
                select(*columns)
                .select_from(SegmentRow)
                .join(_FTS, _FTS.c.rowid == literal_column("segments.rowid"))
                .where(literal_column("segments_fts").op("MATCH")(bindparam("fts_query", self.query.fts5())))
            )
        else:
            q, vector = bindparam("ts_query", self.query.tsquery(), type_=TSQUERY), _VECTOR
            rows = select(*columns).select_from(SegmentRow)
            rows = rows.where(vector.op("@@")(q) if indexed else func.ts_match_vq(vector, q))
        if self.speaker is not None and by_speaker:
            rows = rows.where(func.lower(SegmentRow.speaker) == self.speaker)
        return rows

    def matching_recordings(self, session: Session, candidates: Select[Any], count: int) -> list[uuid.UUID]:
        """The first ``count`` of ``candidates`` (recording ids, in order) that have a matching segment.

        SQLite: from the FTS5 matches. Postgres chooses by the planner's estimate of the matching segments: a
        rare query reads them all from the GIN index (cost: one heap row each); a common one walks the
        candidates in order, probing each one's segments by primary key (cost: its few hundred rows), and stops
        when it has ``count`` (a word in most calls needs a few dozen recordings). A walk that finds too few in
        ``WALK_LIMIT`` recordings (a word common in a few calls only) ends with the GIN index after all.
        """
        if self.sqlite or self._estimated_segments(session) < WALK_ABOVE:
            has_match = Recording.id.in_(self._matching(SegmentRow.recording_id))
            return list(session.scalars(candidates.where(has_match).limit(count)))
        walk = list(session.scalars(candidates.limit(WALK_LIMIT + 1)))
        found: list[uuid.UUID] = []
        done, step = 0, 2 * count
        while done < min(len(walk), WALK_LIMIT) and len(found) < count:
            batch = walk[done : done + step]
            probe = self._matching(SegmentRow.recording_id, indexed=False)
            matched = set(session.scalars(probe.where(SegmentRow.recording_id.in_(batch)).distinct()))
            found += [i for i in batch if i in matched]
            done, step = done + len(batch), step * 2
        if len(found) >= count or len(walk) <= WALK_LIMIT:
            return found[:count]
        has_match = Recording.id.in_(self._matching(SegmentRow.recording_id))
        return list(session.scalars(candidates.where(has_match).limit(count)))

    def _estimated_segments(self, session: Session) -> float:
        """The planner's estimate of the matching segments (from the tsvector statistics ANALYZE keeps).

        Without ``--speaker``: the planner takes ``lower(speaker) = ...`` for 0.5% of rows, where a speaker has
        about half of a call's segments.
        """
        compiled = self._matching(literal_column("1"), by_speaker=False).compile(dialect=session.get_bind().dialect)
        plan = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
        return float(plan.scalar_one()[0]["Plan"]["Plan Rows"])

    def first_hits(self, ids: Sequence[uuid.UUID], per_recording: int) -> Select[Any]:
        """The matching segments of ``ids``: numbered in time order per recording, with their count."""
        part, in_time = SegmentRow.recording_id, (SegmentRow.start, SegmentRow.idx)
        numbered = self._matching(
            SegmentRow.recording_id, SegmentRow.idx, SegmentRow.start, SegmentRow.end, SegmentRow.speaker,
            SegmentRow.text, func.row_number().over(partition_by=part, order_by=in_time).label("n"),
            func.count().over(partition_by=part).label("total"), indexed=False,
        ).where(SegmentRow.recording_id.in_(list(ids))).subquery()  # fmt: skip
        # n <= max(1, ...): one row per recording at least, which carries the count when no hit is shown
        return (
            select(numbered)
            .where(numbered.c.n <= max(1, per_recording))
            .order_by(numbered.c.recording_id, numbered.c.n)
        )


# ---------------------------------------------------------------- rendering


def hms(seconds: float) -> str:
    """``00:12:31``: where in the call a hit is."""
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def snippet(text: str, matches: Sequence[tuple[int, int]], *, mark: tuple[str, str] = ("**", "**"),
            width: int = SNIPPET_CHARS) -> str:  # fmt: skip
    """The segment's text with its matches marked, cut to about ``width`` characters around the first one."""
    begin, end = 0, len(text)
    if len(text) > width and matches:
        begin = max(0, min(matches[0][0] - width // 3, len(text) - width))
        begin = text.rfind(" ", 0, begin) + 1 if begin else 0
        end = min(len(text), begin + width)
        end = end if end == len(text) else max(text.rfind(" ", begin, end), matches[0][1])
    elif len(text) > width:
        end = text.rfind(" ", 0, width) if " " in text[:width] else width
    pieces, at = [], begin
    for start, stop in matches:
        if start < begin or stop > end:
            continue
        pieces += [text[at:start], mark[0], text[start:stop], mark[1]]
        at = stop
    pieces.append(text[at:end])
    said = " ".join("".join(pieces).split())
    return ("… " if begin else "") + said + (" …" if end < len(text) else "")


def render(result: SearchResult, *, bold: bool = False) -> str:
    """The results for a person, 80 columns: ``**refund**`` marks a match (terminal bold with ``bold``)."""
    if not result.recordings:
        return f"no transcripts match {result.query!r}"
    mark = ("\x1b[1m", "\x1b[0m") if bold else ("**", "**")
    shown = len(result.recordings)
    more = " (more match: narrow the search or raise --limit)" if result.more else ""
    counted = f"{shown} recordings match" if shown != 1 else "1 recording matches"
    lines = [f"{counted} {result.query!r}, newest call first{more}"]
    for rec in result.recordings:
        head = f"{str(rec.id)[:8]}  {rec.when.astimezone(UTC):%Y-%m-%d %H:%M}  {rec.status:<10}  "
        if len(head) + len(rec.file_name) <= WIDTH:
            lines += ["", head + rec.file_name]
        else:  # the whole name on lines of its own, never clipped (its end tells calls apart)
            name, step = rec.file_name, WIDTH - 10
            lines += ["", head.rstrip(), *(" " * 10 + name[i : i + step] for i in range(0, len(name), step))]
        said = format_call(rec.call)
        if said:
            lines += textwrap.wrap(said, WIDTH, initial_indent=" " * 10, subsequent_indent=" " * 10)
        for hit in rec.hits:
            first = f"  {hms(hit.start)}  {(hit.speaker or '')[:12]:<12}  "
            body = snippet(hit.text, hit.matches, mark=mark)
            lines += textwrap.wrap(body, WIDTH, initial_indent=first, subsequent_indent=" " * len(first))
        if rec.hit_count > len(rec.hits):
            lines.append(f"  {'':8}  and {rec.hit_count - len(rec.hits)} more (of {rec.hit_count} matching segments)")
    return "\n".join(lines)


def to_json(result: SearchResult) -> dict[str, Any]:
    """The results as JSON-ready values: every hit's full text and its matches as ``[start, end)`` offsets."""
    return {
        "query": result.query,
        "more": result.more,
        "recordings": [
            {
                "id": str(rec.id),
                "file_name": rec.file_name,
                "status": rec.status,
                "duration_seconds": rec.duration_seconds,
                "when": rec.when.astimezone(UTC).isoformat(),
                **rec.call,
                "hit_count": rec.hit_count,
                "hits": [
                    {
                        "idx": h.idx,
                        "start": h.start,
                        "end": h.end,
                        "at": hms(h.start),
                        "speaker": h.speaker,
                        "text": h.text,
                        "matches": [list(m) for m in h.matches],
                    }
                    for h in rec.hits
                ],
            }
            for rec in result.recordings
        ],
    }
