"""Full-text search (search.py, 0007_search.py) on real Postgres and SQLite: the same answers from both."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle, search
from transcriber.db import make_engine, make_session_factory, transaction
from transcriber.errors import TranscriberError
from transcriber.report import CallFilter
from transcriber.segments import Segment
from transcriber.speakers import Labeller, Turn
from transcriber.tables import Recording
from transcriber.tables import Segment as SegmentRow
from transcriber.transcripts import load_segments

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# (file name, phone, call start (None: not in the name), status, [(start, speaker, text), ...])
CALLS: list[tuple[str, str | None, datetime | None, str, list[tuple[float, str | None, str]]]] = [
    (
        "Call recording +18134353769_260301_100000.m4a",
        "+18134353769",
        T0 + timedelta(hours=1),
        "completed",
        [
            (0.0, "agent", "Thank you for calling, how can I help?"),
            (4.2, "caller", "I want a full refund for my order."),
            (751.0, "agent", "Refunds take 3.5 business days; it's our policy."),
            (760.5, "caller", "Can I speak to a supervisor? This is a follow-up."),
        ],
    ),
    (
        "Call recording +442071234567_260302_080000.m4a",
        "+442071234567",
        T0 + timedelta(days=1),
        "completed",
        [
            (1.0, "SPEAKER_00", "Hello, I'd like to cancel my subscription."),
            (6.0, "SPEAKER_01", "Sorry to hear that. Would a partial refund help?"),
            (3700.0, "SPEAKER_00", "No, cancel it; the refunded amount was wrong anyway."),
        ],
    ),
    (
        "meeting-notes.wav",
        None,
        None,
        "completed",
        [
            (0.0, None, "Café opening hours: naïve question, ÉCOLE closes at 5."),
            (9.0, None, "E-mail a@b.com or call 555-0100 about the refund policy."),
        ],
    ),
    (
        "Call recording +18134353769_260228_170000.m4a",
        "+18134353769",
        T0 - timedelta(days=1),
        "failed",
        [
            (0.0, "caller", "Refund, refund, refund! Full refund or I cancel."),
        ],
    ),
    (
        "Call recording 555 0199_260303_120000.m4a",
        "5550199",
        T0 + timedelta(days=2),
        "processing",
        [
            (12.0, "Agent", "Your refund request is logged."),
            (15.0, "caller", "Thanks. And the refund on the other card?"),
        ],
    ),
]
QUERIES = [
    "refund",
    "Refund",
    "ref",
    "refunded",
    '"full refund"',
    "full refund",
    "refund OR cancel",
    "refund -full",
    "cancel -refund",
    "it's",
    "3.5",
    "5",
    "follow-up",
    "follow up",
    "café",
    "école",
    "a@b.com",
    "555",
    '"partial refund" OR supervisor',
    "supervisor OR",
    "refund AND cancel",
    "xyzzy",
    '"refund policy"',
]


def _ids(n: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=i + 1) for i in range(n)]


def fill(sessions: sessionmaker[Session], calls: Sequence[Any] = CALLS) -> list[uuid.UUID]:
    """The calls inserted as rows (fixed ids and times, so both databases hold exactly the same)."""
    ids = _ids(len(calls))
    with transaction(sessions) as s:
        for rid, (name, phone, started, status, segments) in zip(ids, calls, strict=True):
            s.execute(insert(Recording).values(
                id=rid, file_path=f"/in/{name}", file_name=name, file_size=1, content_sha256=rid.hex * 2,
                status=status, phone_number=phone, call_started_at=started, created_at=T0 + timedelta(minutes=rid.int),
                duration_seconds=3600.0,
            ))  # fmt: skip
            s.execute(insert(SegmentRow), [
                {"recording_id": rid, "idx": i, "start": start, "end": start + 3.5, "text": said, "speaker": who}
                for i, (start, who, said) in enumerate(segments)
            ])  # fmt: skip
    return ids


@pytest.fixture(params=["index", "walk", "walk, then index"])
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How Postgres finds the recordings: all matches from the GIN index (a rare query), a walk of the newest
    recordings (a common one), a walk that gives up after 2 recordings and ends with the index."""
    if request.param != "index":
        monkeypatch.setattr(search, "WALK_ABOVE", -1)
    if request.param == "walk, then index":
        monkeypatch.setattr(search, "WALK_LIMIT", 2)
    return str(request.param)


@pytest.fixture
def both(pg_url: str, sqlite_url: str) -> Iterator[tuple[sessionmaker[Session], sessionmaker[Session]]]:
    engines = [make_engine(pg_url), make_engine(sqlite_url)]
    yield make_session_factory(engines[0]), make_session_factory(engines[1])
    for engine in engines:
        engine.dispose()


def run(sessions: sessionmaker[Session], query: str, **options: Any) -> dict[str, Any]:
    with sessions() as s:
        return search.to_json(search.search(s, query, **options))


def found(sessions: sessionmaker[Session], query: str, **options: Any) -> list[tuple[str, list[str]]]:
    """(file name, [HH:MM:SS of each hit]) per recording: what a person reads first."""
    return [(r["file_name"], [h["at"] for h in r["hits"]]) for r in run(sessions, query, **options)["recordings"]]


# ---------------------------------------------------------------- the same answers on both databases


def test_both_databases_give_the_same_results_hits_offsets_and_snippets(
    both: tuple[sessionmaker[Session], sessionmaker[Session]], strategy: str
) -> None:
    pg, lite = both
    fill(pg), fill(lite)
    options: list[dict[str, Any]] = [
        {}, {"speaker": "CALLER"}, {"statuses": ["completed"]}, {"limit": 2}, {"hits_per_recording": 1},
        {"call": CallFilter(phone="8134353769")}, {"since": T0, "until": T0 + timedelta(days=1, hours=1)},
    ]  # fmt: skip
    matched = 0
    for query in QUERIES:
        for extra in options:
            on_pg, on_lite = run(pg, query, **extra), run(lite, query, **extra)
            assert on_pg == on_lite, (query, extra)
            matched += bool(on_pg["recordings"])
    with pg() as s:
        rendered = search.render(search.search(s, "refund"))
    with lite() as s:
        assert search.render(search.search(s, "refund")) == rendered
    assert matched > len(QUERIES) * 3  # the comparison is of answers, not of two empty lists


def test_a_generated_corpus_gives_the_same_answers_on_both(
    both: tuple[sessionmaker[Session], sessionmaker[Session]], strategy: str
) -> None:
    """Random text from awkward pieces (punctuation inside words, digits, accents, capitals), many queries."""
    rng = random.Random(14)
    pieces = ["refund", "Refunds", "refunded", "full", "cancel", "can't", "it's", "follow-up", "3.5", "555-0100",
              "a@b.com", "Café", "naïve", "ÉCOLE", "order", "orders", "card", "x_y", "(hold)", "ok.", "—",
              "supervisor"]  # fmt: skip
    calls = [
        (f"call-{n:02d}.m4a", f"+1813435{n:04d}", T0 + timedelta(hours=n), rng.choice(["completed", "failed"]),
         [(i * 4.0, rng.choice(["agent", "caller", None]), " ".join(rng.choices(pieces, k=rng.randint(3, 12))))
          for i in range(30)])
        for n in range(25)
    ]  # fmt: skip
    pg, lite = both
    fill(pg, calls), fill(lite, calls)
    queries = [*QUERIES, "order", "orders", "can't", "can t", "x_y", "hold", "ok", '"full refund" -card', "o",
               "refunds OR card", '"cancel full"', "-x", "NOT"]  # fmt: skip
    for query in queries:
        for extra in ({}, {"limit": 30, "hits_per_recording": 100}, {"speaker": "agent", "statuses": ["failed"]}):
            try:
                on_pg = run(pg, query, **extra)
            except search.SearchQueryError:
                with pytest.raises(search.SearchQueryError):
                    run(lite, query, **extra)
                continue
            assert on_pg == run(lite, query, **extra), (query, extra)


# ---------------------------------------------------------------- what a query means (both databases)


def test_words_match_beginnings_and_are_anded(sessions: sessionmaker[Session]) -> None:
    fill(sessions)
    assert found(sessions, "refund") == [
        ("Call recording 555 0199_260303_120000.m4a", ["00:00:12", "00:00:15"]),
        ("Call recording +442071234567_260302_080000.m4a", ["00:00:06", "01:01:40"]),
        ("Call recording +18134353769_260301_100000.m4a", ["00:00:04", "00:12:31"]),
        ("meeting-notes.wav", ["00:00:09"]),  # no call time in the name: placed by when it was registered
        ("Call recording +18134353769_260228_170000.m4a", ["00:00:00"]),
    ]
    assert [r[0] for r in found(sessions, "refund cancel")] == [
        "Call recording +442071234567_260302_080000.m4a", "Call recording +18134353769_260228_170000.m4a",
    ]  # fmt: skip
    assert found(sessions, "refunded") == [("Call recording +442071234567_260302_080000.m4a", ["01:01:40"])]


def test_phrases_or_and_exclusions(sessions: sessionmaker[Session]) -> None:
    fill(sessions)
    full = run(sessions, '"full refund"')["recordings"]
    assert [(r["file_name"][15:28], [h["text"] for h in r["hits"]]) for r in full] == [
        ("+18134353769_", ["I want a full refund for my order."]),
        ("+18134353769_", ["Refund, refund, refund! Full refund or I cancel."]),
    ]
    assert full[0]["hits"][0]["matches"] == [[9, 20]]  # "full refund": one highlight
    assert found(sessions, '"want refund"') == []  # both words are there, but not side by side
    assert len(found(sessions, "supervisor OR partial")) == 2
    assert found(sessions, "refund -full -partial -policy -card")[0][1] == ["00:00:12"]
    assert found(sessions, "cancel -refund") == [("Call recording +442071234567_260302_080000.m4a", ["00:00:01"])]


def test_punctuation_numbers_and_accents(sessions: sessionmaker[Session]) -> None:
    fill(sessions)
    assert found(sessions, "it's")[0][1] == ["00:12:31"]
    assert found(sessions, "3.5")[0][1] == ["00:12:31"]
    assert [h for r in found(sessions, "5") for h in r[1]] == ["00:12:31", "00:00:00", "00:00:09"]  # 3.5, 5, 555
    assert found(sessions, "follow-up") == found(sessions, "follow up") != []
    assert found(sessions, "a@b.com") == [("meeting-notes.wav", ["00:00:09"])]
    assert found(sessions, "ÉCOLE") == found(sessions, "école") == [("meeting-notes.wav", ["00:00:00"])]
    assert found(sessions, "cafe") == []  # diacritics are kept: café is not cafe


@pytest.mark.parametrize(
    "query",
    [
        "it's",
        "a:b",
        '"unbalanced',
        "refund*",
        "'; DROP TABLE segments; --",
        "OR",
        "(refund",
        "refund)",
        "NEAR(refund cancel)",
        "!refund",
        "refund:*",
        "\\",
        "‘’",
    ],
)
def test_odd_queries_do_not_raise(sessions: sessionmaker[Session], query: str) -> None:
    fill(sessions)
    try:
        run(sessions, query)
    except search.SearchQueryError as exc:  # no words at all: one clear line
        assert "nothing to search for" in str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize("query", ["*", "", "   ", "AND", "-refund", "- -", '""', "!!!"])
def test_a_query_without_words_says_so_in_one_line(sessions: sessionmaker[Session], query: str) -> None:
    with sessions() as s, pytest.raises(search.SearchQueryError, match="nothing to search for"):
        search.search(s, query)
    assert issubclass(search.SearchQueryError, TranscriberError)  # the CLI prints it as one line


def test_filters_phone_time_status_speaker_and_limits(sessions: sessionmaker[Session]) -> None:
    fill(sessions)
    by_phone = found(sessions, "refund", call=CallFilter(phone="+1 813 435 3769"))
    assert [r[0][15:28] for r in by_phone] == ["+18134353769_", "+18134353769_"]
    assert [r[0] for r in found(sessions, "refund", since=T0, until=T0 + timedelta(days=1))] == [
        "Call recording +18134353769_260301_100000.m4a", "meeting-notes.wav",  # no call time: registered then
    ]  # fmt: skip
    assert [r[0] for r in found(sessions, "refund", statuses=["failed", "processing"])] == [
        "Call recording 555 0199_260303_120000.m4a", "Call recording +18134353769_260228_170000.m4a",
    ]  # fmt: skip
    assert found(sessions, "refund", speaker="agent") == [  # any case: "Agent" too
        ("Call recording 555 0199_260303_120000.m4a", ["00:00:12"]),
        ("Call recording +18134353769_260301_100000.m4a", ["00:12:31"]),
    ]
    limited = run(sessions, "refund", limit=2, hits_per_recording=1)
    assert limited["more"] is True and len(limited["recordings"]) == 2
    assert [(r["hit_count"], len(r["hits"])) for r in limited["recordings"]] == [(2, 1), (2, 1)]
    assert run(sessions, "refund", limit=5)["more"] is False
    with sessions() as s, pytest.raises(TranscriberError, match="--until is not after --since"):
        search.search(s, "refund", since=T0, until=T0)


# ---------------------------------------------------------------- the index stays in step with the rows


def test_rewritten_deleted_and_updated_segments_stay_in_step(sessions: sessionmaker[Session]) -> None:
    """What lifecycle does to rows (label_speakers: delete and insert; a new transcription: delete), and SQL."""
    ids = fill(sessions)
    with transaction(sessions) as s:
        s.execute(update(SegmentRow).where(SegmentRow.recording_id == ids[2], SegmentRow.idx == 1).values(
            text="Nothing about money here."))  # fmt: skip
        s.execute(delete(SegmentRow).where(SegmentRow.recording_id == ids[4]))
        s.execute(delete(Recording).where(Recording.id == ids[3]))  # its segments go by ON DELETE CASCADE
    assert [r[0][15:28] for r in found(sessions, "refund")] == ["+442071234567", "+18134353769_"]
    assert found(sessions, "money") == [("meeting-notes.wav", ["00:00:09"])]
    assert found(sessions, "policy") == [("Call recording +18134353769_260301_100000.m4a", ["00:12:31"])]
    with sessions() as s:
        assert s.scalar(select(SegmentRow.text).where(SegmentRow.recording_id == ids[2], SegmentRow.idx == 1))


def test_lifecycle_labelling_and_a_new_transcription_keep_the_index_right(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as s:
        rec, _ = lifecycle.register_recording(s, file_path="/in/c.m4a", file_name="c.m4a", file_size=1,
                                              content_sha256="c" * 64, now=T0)  # fmt: skip
    rid = rec.id
    words = ((0.0, 1.0, " I", 1.0), (1.0, 2.0, " want", 1.0), (2.0, 3.0, " a", 1.0), (3.0, 4.0, " refund.", 1.0),
             (4.0, 5.0, " Sure,", 1.0), (5.0, 6.0, " supervisor", 1.0), (6.0, 7.0, " here.", 1.0))  # fmt: skip
    said = Segment(0.0, 7.0, "".join(w[2] for w in words), words=words)
    claim = _claim(sessions, rid, T0)
    with transaction(sessions) as s:
        lifecycle.save_progress(s, claim, now=T0, first_idx=0, segments=[said], progress_seconds=7.0)
    assert found(sessions, "refund supervisor") == [("c.m4a", ["00:00:00"])]  # one segment holds both
    with transaction(sessions) as s:  # the speaker changes at 4 s: two rows instead of one
        lifecycle.label_speakers(s, claim, Labeller([Turn(0.0, 4.0, 0), Turn(4.0, 7.0, 1)], ["caller", "agent"]))
        lifecycle.complete_recording(s, claim, now=T0, segments=load_segments(s, rid), language="en",
                                     duration_seconds=7.0)  # fmt: skip
    assert found(sessions, "refund supervisor") == []
    assert run(sessions, "supervisor")["recordings"][0]["hits"][0] | {"matches": None} == {
        "idx": 1, "start": 4.0, "end": 7.0, "at": "00:00:04", "speaker": "agent", "text": "Sure, supervisor here.",
        "matches": None,
    }  # fmt: skip
    assert found(sessions, "refund", speaker="caller") == [("c.m4a", ["00:00:00"])]
    with transaction(sessions) as s:  # an operator asks for it again: the new attempt starts from nothing
        lifecycle.reset_recordings(s, now=T0, ids=[rid])
    claim = _claim(sessions, rid, T0 + timedelta(minutes=1))
    with transaction(sessions) as s:
        lifecycle.save_progress(s, claim, now=T0, first_idx=0, segments=[Segment(0.0, 3.0, " Cancel it.")],
                                progress_seconds=3.0)  # fmt: skip
    assert found(sessions, "refund") == found(sessions, "supervisor") == []
    assert found(sessions, "cancel") == [("c.m4a", ["00:00:00"])]


def _claim(sessions: sessionmaker[Session], rid: uuid.UUID, now: datetime) -> lifecycle.Claim:
    with transaction(sessions) as s:
        claim = lifecycle.claim_recording(s, recording_id=rid, task_id=None, worker="w", now=now)
    assert claim is not None
    return claim


def test_the_upgrade_indexes_rows_already_there_and_downgrade_removes_the_index(sqlite_url: str, pg_url: str) -> None:
    from alembic import command

    from transcriber.migrate import alembic_config, upgrade_to_head

    for url in (sqlite_url, pg_url):
        engine = make_engine(url)
        try:
            fill(make_session_factory(engine))  # rows written at head (the models are head's), then the index goes
            engine.dispose()  # SQLite: an idle pooled connection keeps the table "locked" for the rebuild
            command.downgrade(alembic_config(url), "0006")
            upgrade_to_head(url)  # 0007 indexes the rows already there
            assert found(make_session_factory(engine), "supervisor")[0][1] == ["00:12:40"]
            command.downgrade(alembic_config(url), "0006")
            with engine.connect() as conn:
                probe = "SELECT count(*) FROM sqlite_master WHERE name LIKE 'segments_fts%'" if "sqlite" in url else (
                    "SELECT count(*) FROM information_schema.columns WHERE column_name = 'search_vector'")  # fmt: skip
                assert conn.execute(text(probe)).scalar() == 0
                assert conn.execute(text("SELECT count(*) FROM segments")).scalar() == 12
            assert upgrade_to_head(url)
        finally:
            engine.dispose()


# ---------------------------------------------------------------- rendering (pure)


def test_snippets_highlight_in_python_and_long_text_is_cut_around_the_match() -> None:
    query = search.parse_query('refund "full card"')
    said = "A full card and a REFUNDED fee."
    matches = search.find_matches(said, query)
    assert matches == ((2, 11), (18, 26))
    assert search.snippet(said, matches) == "A **full card** and a **REFUNDED** fee."
    long = " ".join(["filler"] * 60) + " the refund itself " + " ".join(["tail"] * 60)
    cut = search.snippet(long, search.find_matches(long, query))
    assert cut.startswith("… filler") and cut.endswith("tail …") and "**refund**" in cut and len(cut) < 180
    assert search.hms(3751.9) == "01:02:31"


def test_query_syntax_is_built_from_words_only() -> None:
    q = search.parse_query('Refund OR credit "full  card" -cancel it\'s *')
    assert q.groups == ((("refund",), ("credit",)), (("full", "card"),), (("it", "s"),))
    assert q.tsquery() == "('refund':* | 'credit':*) & ('full':* <-> 'card':*) & ('it':* <-> 's':*) & !('cancel':*)"
    assert q.fts5() == '("refund"* OR "credit"*) AND ("full"* + "card"*) AND ("it"* + "s"*) NOT ("cancel"*)'


def test_render_names_the_file_the_time_the_speaker_and_the_rest(sessions: sessionmaker[Session]) -> None:
    fill(sessions)
    with sessions() as s:
        said = search.render(search.search(s, "refund", call=CallFilter(phone="8134353769"), hits_per_recording=1))
        none = search.render(search.search(s, "xyzzy"))
    assert said.splitlines()[:6] == [
        "2 recordings match 'refund', newest call first",
        "",
        "00000000  2026-03-01 10:00  completed",
        "          Call recording +18134353769_260301_100000.m4a",
        "          +18134353769, 2026-03-01 10:00:00 UTC",
        "  00:00:04  caller        I want a full **refund** for my order.",
    ]
    assert "and 1 more (of 2 matching segments)" in said
    assert none == "no transcripts match 'xyzzy'"


def test_a_lost_index_is_built_again_by_db_reindex(sqlite_url: str) -> None:
    """``transcriber db reindex`` (``search.reindex``) builds the FTS5 index again from the segments: for an index
    that lost its way (SQLite's VACUUM may renumber the rowids it points at; here it is emptied outright)."""
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    fill(sessions)
    expected = run(sessions, "refund")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO segments_fts(segments_fts) VALUES ('delete-all')"))
    assert run(sessions, "refund")["recordings"] == []  # the failure the repair is for
    with transaction(sessions) as s:
        assert search.reindex(s) == "rebuilt segments_fts from the segments"
    assert run(sessions, "refund") == expected and expected["recordings"]
    engine.dispose()


def test_reindex_on_postgres_keeps_the_answers(pg_url: str) -> None:
    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    fill(sessions)
    before = run(sessions, "refund")
    with transaction(sessions) as s:
        assert search.reindex(s) == "rebuilt ix_segments_search_vector"
    assert run(sessions, "refund") == before and before["recordings"]
    engine.dispose()
