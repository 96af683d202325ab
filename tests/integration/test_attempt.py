"""Every path of one attempt (``worker.run_attempt``) against real databases, with an in-memory model.

``FakeRunner`` stands in for the model only; the claim, heartbeats, saved segments,
output files, completion and failure are the real ones, on Postgres and SQLite.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from transcriber import lifecycle
from transcriber.audio import sha256_of
from transcriber.db import make_engine, make_session_factory, transaction
from transcriber.errors import AttemptTimeout, PermanentError, WorkerLost
from transcriber.runner import Diarizing, Done, Info, Reached, Turns
from transcriber.segments import Segment
from transcriber.settings import Settings, load_settings
from transcriber.speakers import Diarization, Turn
from transcriber.tables import utcnow
from transcriber.testing import FakeRunner, Step, speech
from transcriber.worker import WorkerContext, run_attempt


class World:
    """One worker context over a real database, a watched folder and a fake model."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        self.inbox = tmp / "inbox"
        self.out = tmp / "out"
        self.inbox.mkdir()
        self.settings: Settings = load_settings(
            database_url=db_url, watch_dir=self.inbox, output_dir=self.out, heartbeat_seconds=0.001,
            stuck_timeout_seconds=2, task_max_retries=2, retry_backoff_seconds=0, whisper_model="tiny.en",
        )  # fmt: skip
        self.engine = make_engine(db_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.runner = FakeRunner({})
        self.ctx = WorkerContext(self.settings, self.engine, self.sessions, lambda: self.runner, name="test:1")

    def add(self, name: str, script: list[Step], *, content: bytes | None = None) -> uuid.UUID:
        """A file in the inbox, registered as a queued recording, with what the fake model will say of it."""
        path = self.inbox / name
        path.write_bytes(content or name.encode() * 50)
        self.runner.scripts[str(path)] = script
        with transaction(self.sessions) as s:
            rec, _ = lifecycle.register_recording(
                s, file_path=str(path), file_name=name, file_size=path.stat().st_size,
                content_sha256=sha256_of(str(path)), now=utcnow(),
            )  # fmt: skip
            return rec.id

    def run(self, rid: uuid.UUID, task_id: str | None = None) -> Any:
        return run_attempt(self.ctx, rid, task_id=task_id or str(uuid.uuid4()))

    def one(self, sql: str, **params: Any) -> Any:
        with self.sessions() as s:
            return s.execute(text(sql), params).one()

    def all(self, sql: str, **params: Any) -> list[Any]:
        with self.sessions() as s:
            return list(s.execute(text(sql), params).all())

    def key(self, rid: uuid.UUID) -> Any:
        """A recording id as the database stores it (SQLite: 32 hex digits)."""
        return rid.hex if self.engine.dialect.name == "sqlite" else rid

    def sql(self, sql: str, **params: Any) -> None:
        with transaction(self.sessions) as s:
            s.execute(text(sql), params)


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[World]:
    w = World(tmp_path, db_url)
    yield w
    w.engine.dispose()


def recording(world: World, rid: uuid.UUID) -> Any:
    return world.one(
        "SELECT status, retry_count, error_message, transcript, duration_seconds FROM recordings WHERE id = :id",
        id=world.key(rid),
    )


def runs(world: World, rid: uuid.UUID) -> list[tuple[str, str | None]]:
    key = str(rid).replace("-", "") if world.engine.dialect.name == "sqlite" else rid
    return [
        (r[0], r[1])
        for r in world.all(
            "SELECT outcome, error_message FROM attempts WHERE recording_id = :id ORDER BY attempt", id=key
        )
    ]


def test_success_saves_segments_files_and_transcript_from_one_read(world: World) -> None:
    rid = world.add("call.m4a", speech(9.0, "Good morning.", "My account number is four two.", "Bye."))
    report = world.run(rid)
    assert report.status == "completed"
    status, retries, error, transcript, duration = recording(world, rid)
    assert (status, retries, error, duration) == ("completed", 0, None, 9.0)
    assert transcript == "Good morning. My account number is four two. Bye."
    assert (world.out / "call.txt").read_text() == "Good morning.\nMy account number is four two.\nBye.\n"
    assert json.loads((world.out / "call.json").read_text())["text"] == transcript
    assert runs(world, rid) == [("succeeded", None)]
    assert (world.runner.finished, world.runner.cut_short) == (1, 0)


def test_words_of_one_recording_never_reach_the_next(world: World) -> None:
    """A's stream ends early (an error on an event); B, on the same runner, gets only B's words."""
    a = world.add("a.m4a", [Info(172.0), Segment(0, 5, " alpha words"), ValueError("decoder hiccup")])
    b = world.add("b.m4a", speech(4.0, "bravo words"))
    assert world.run(a).status == "queued"
    assert world.run(b).status == "completed"
    assert recording(world, b)[3:] == ("bravo words", 4.0)
    assert (world.out / "b.txt").read_text() == "bravo words\n"


def test_timeout_keeps_progress_and_is_retried_then_fails_with_the_cause(world: World) -> None:
    script = [Info(60.0), Segment(0, 20, " first part"), AttemptTimeout(1)]
    rid = world.add("long.m4a", script)
    for _ in range(3):
        world.run(rid)
    status, retries, error, _, _ = recording(world, rid)
    assert (status, retries) == ("failed", 2)
    assert error == "Max retries exceeded (2): Timeout exceeded: TimeLimitExceeded(1)"
    assert [r[0] for r in runs(world, rid)] == ["timeout"] * 3
    assert [r.start for r in world.runner.requests] == [0.0, 20.0, 20.0]  # resumed after the saved segment


@pytest.mark.parametrize(
    ("error", "outcome", "cause"),
    [
        (ValueError("no such codec parameter"), "failed", "ValueError: no such codec parameter"),
        (KeyError("speaker"), "failed", "KeyError: 'speaker'"),
        (UnicodeEncodeError("utf-8", "\udcfc", 0, 1, "surrogates not allowed"), "failed", "UnicodeEncodeError: "),
        (WorkerLost("Worker lost: model process exited with code -9"), "lost", "Worker lost: model process exited"),
    ],
)
def test_any_exception_is_the_attempts_cause_and_retried(
    world: World, error: Exception, outcome: str, cause: str
) -> None:
    rid = world.add("odd.m4a", [Info(4.0), error])
    report = world.run(rid)
    status, retries, message, _, _ = recording(world, rid)
    assert (report.status, status, retries) == ("queued", "queued", 1)
    assert message.startswith(cause)
    [(run_outcome, run_error)] = runs(world, rid)
    assert run_outcome == outcome and run_error == message  # never replaced by "Worker lost: no heartbeat"


def test_permanent_error_fails_at_once(world: World) -> None:
    rid = world.add("bad.m4a", [PermanentError("Unreadable audio: moov atom not found")])
    world.run(rid)
    assert recording(world, rid)[:3] == ("failed", 0, "Unreadable audio: moov atom not found")


def test_database_error_on_an_event_is_recorded(world: World, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite does not enforce column lengths; Postgres refuses the value (a real DataError)")
    rid = world.add("long-label.m4a", [Info(4.0), Segment(0, 4, " hi", speaker="s" * 100), Done("en", 0.9)])
    world.run(rid)
    status, retries, message, _, _ = recording(world, rid)
    assert (status, retries) == ("queued", 1)
    assert message.startswith("DataError: value too long for type character varying(64)")
    assert runs(world, rid) == [("failed", message)]


def test_a_nul_character_from_the_model_is_a_recorded_cause(world: World, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite stores NUL characters; psycopg2 refuses them")
    rid = world.add("nul.m4a", [Info(4.0), Segment(0, 4, " bad \x00 text"), Done("en", 0.9)])
    world.run(rid)
    assert recording(world, rid)[2] == "ValueError: A string literal cannot contain NUL (0x00) characters."


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ("UPDATE recordings SET status='queued'", "queued", "Lease lost: the recording was set to queued"),
        ("UPDATE recordings SET status='failed'", "failed", "Lease lost: the recording was set to failed"),
        ("skip", "skipped", "Skipped by an operator while this attempt ran"),
        ("reset", "queued", "Reset by an operator while this attempt ran"),
    ],
)
def test_operator_changes_mid_stream_stop_the_attempt(world: World, change: str, status: str, reason: str) -> None:
    holder: dict[str, uuid.UUID] = {}

    def operator() -> None:
        if change in ("skip", "reset"):
            with transaction(world.sessions) as s:
                action = lifecycle.skip_recordings if change == "skip" else lifecycle.reset_recordings
                assert action(s, now=utcnow(), ids=[holder["id"]])
        else:
            world.sql(change)
        time.sleep(2 * world.settings.heartbeat_seconds)  # a heartbeat is due at the next event, not only at the end

    script: list[Step] = [Info(30.0), Segment(0, 10, " before"), operator, Segment(10, 20, " after"),
                          Segment(20, 30, " more"), Done("en", 0.9)]  # fmt: skip
    holder["id"] = rid = world.add("busy.m4a", script)
    report = world.run(rid)
    assert report.outcome is not None and report.outcome.value == "lost"
    assert recording(world, rid)[0] == status
    [(outcome, error)] = runs(world, rid)
    assert outcome == "lost" and error.startswith(reason)
    texts = [r[0] for r in world.all("SELECT text FROM segments ORDER BY idx")]
    assert " after" not in texts and " more" not in texts  # nothing written after the change
    assert world.runner.cut_short == 1  # the model was stopped, not left talking
    assert not (world.out / "busy.txt").exists()


def test_sql_requeue_of_a_running_call_is_sent_again_and_never_overlaps(world: World) -> None:
    """The operator's careless ``SET status='queued'`` on a processing call: one success, no open attempt."""
    script: list[Step] = [
        Info(20.0),
        Segment(0, 10, " one"),
        lambda: world.sql("UPDATE recordings SET status='queued'"),
    ]
    rid = world.add("again.m4a", script + [Segment(10, 20, " two"), Done("en", 0.9)])
    task = str(uuid.uuid4())
    world.run(rid, task)
    with world.sessions() as s:  # the message of the running attempt is still in the broker: it is spent
        found = lifecycle.find_dispatchable(s, now=utcnow(), live_task_ids={task})
    assert [f[0] for f in found] == [rid]
    world.runner.scripts[str(world.inbox / "again.m4a")] = speech(20.0, "one", "two")
    assert world.run(rid).status == "completed"
    assert [r[0] for r in runs(world, rid)] == ["lost", "succeeded"]


def test_a_second_claim_closes_an_orphaned_running_attempt(world: World) -> None:
    rid = world.add("orphan.m4a", speech(4.0, "hello"))
    with transaction(world.sessions) as s:
        first = lifecycle.claim_recording(s, recording_id=rid, task_id="t1", worker="gone:1", now=utcnow())
    assert first is not None
    world.sql("UPDATE recordings SET status='queued'")  # the worker of attempt 1 died; nobody closed it
    world.run(rid)
    assert [r[0] for r in runs(world, rid)] == ["lost", "succeeded"]
    assert runs(world, rid)[0][1].startswith("Superseded: the recording was queued again")


def test_interrupt_hands_the_recording_back_with_its_progress(world: World) -> None:
    script: list[Step] = [Info(30.0), Segment(0, 10, " kept"), world.ctx.stopping.set, Segment(10, 20, " heard")]
    rid = world.add("stop.m4a", script + [Segment(20, 30, " never"), Done("en", 0.9)])
    report = world.run(rid)
    assert (report.status, recording(world, rid)[:2]) == ("queued", ("queued", 0))
    [(outcome, error)] = runs(world, rid)
    assert outcome == "lost" and error.startswith("Interrupted: the worker shut down")
    assert [r[0] for r in world.all("SELECT text FROM segments ORDER BY idx")] == [" kept", " heard"]
    assert world.runner.cut_short == 1


def test_progress_reporting_that_fails_never_ends_the_attempt(world: World) -> None:
    """A broker blip in the progress event (kombu's OperationalError) is logged; the call completes."""

    def broken(_done: float, _total: float | None) -> None:
        from kombu.exceptions import OperationalError

        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    rid = world.add("blip.m4a", speech(8.0, "still", "transcribed"))
    report = run_attempt(world.ctx, rid, task_id="t", on_progress=broken)
    assert report.status == "completed" and recording(world, rid)[3] == "still transcribed"


def test_the_deadline_is_planned_once_from_the_measured_duration(world: World) -> None:
    world.settings = world.ctx.settings = load_settings(
        database_url=world.settings.database_url, watch_dir=world.inbox, output_dir=world.out,
        task_timeout_seconds=60, task_timeout_realtime_factor=2.0, whisper_model="tiny.en",
    )  # fmt: skip
    rid = world.add("plan.m4a", speech(600.0, "ten minutes"))
    world.run(rid)
    [deadline] = world.runner.deadlines
    assert deadline is not None and deadline.seconds == 1200.0
    assert world.one("SELECT time_limit_seconds FROM attempts WHERE recording_id = :id", id=world.key(rid))[0] == 1200.0


# ---------------------------------------------------------------- coverage (issue 12)


def quality(world: World, rid: uuid.UUID) -> Any:
    return world.one(
        "SELECT speech_seconds, uncovered_seconds, uncovered_spans, needs_review, review_reasons, words_per_minute"
        " FROM recordings WHERE id = :id",
        id=world.key(rid),
    )


def test_speech_without_text_flags_the_recording_and_names_where(world: World) -> None:
    from transcriber.coverage import Gap

    script: list[Step] = [
        Info(300.0),
        Segment(0, 264, " " + "words " * 500),
        Segment(287, 300, " goodbye and thanks"),
        Done("en", 0.99, speech=(Gap(0, 264), Gap(264.1, 286.7), Gap(287, 300))),
    ]
    rid = world.add("gap.m4a", script)
    assert world.run(rid).status == "completed"
    speech, uncovered, spans, review, reasons, _ = quality(world, rid)
    assert (speech, review) == (round(264 + 22.6 + 13, 2), True)
    assert uncovered == 22.0 and json.loads(spans) == [{"start": 264.5, "end": 286.5}]  # less COVER_PAD each side
    assert "22.0 s of speech without text at 04:24-04:46" in reasons
    doc = json.loads((world.out / "gap.json").read_text())
    assert doc["coverage"] == {"speech_seconds": 299.6, "uncovered_seconds": 22.0,
                               "uncovered": [{"start": 264.5, "end": 286.5}]}  # fmt: skip
    # Named where an operator looks: status, status ID, status --needs-review.
    from transcriber import report

    with world.sessions() as session:
        overview = report.format_summary(report.summary(session, now=utcnow()))
        detail = report.format_detail(report.attempts_of(session, str(rid)))
        review_list = report.format_needs_review(report.needs_review_list(session))
    said = "22.0 s of speech without text at 04:24-04:46"
    assert "needs review 1" in overview and said in overview, overview
    assert said in detail and "coverage  speech without text 22s at 04:24-04:46" in detail, detail
    assert said in review_list, review_list


def test_repaired_segments_saved_last_are_read_in_time_order(world: World) -> None:
    from transcriber.coverage import Gap

    script: list[Step] = [
        Info(30.0),
        Segment(0, 10, " one"),
        Segment(20, 30, " three"),
        Segment(10, 20, " two"),  # the repair's, after the main pass
        Done("en", 0.99, speech=(Gap(0, 30),)),
    ]
    rid = world.add("repaired.m4a", script)
    world.run(rid)
    assert recording(world, rid).transcript == "one two three"
    assert quality(world, rid)[1:3] == (0.0, None)  # all speech covered


def test_a_resumed_call_is_measured_whole(world: World) -> None:
    """Quality figures of a resumed recording cover the whole call, not only its last attempt."""
    from transcriber.coverage import Gap

    words = " ".join(["word"] * 100)
    script: list[Step] = [
        Info(120.0),
        Segment(0, 60, f" {words}"),
        AttemptTimeout(1),
        Segment(60, 120, f" {words}"),
        Done("en", 0.99, speech=(Gap(0, 60), Gap(60, 120))),
    ]
    rid = world.add("resumed.m4a", script)
    world.runner.scripts[str(world.inbox / "resumed.m4a")] = script[:3]
    world.run(rid)
    world.runner.scripts[str(world.inbox / "resumed.m4a")] = [script[0], *script[3:]]
    world.run(rid)
    speech, uncovered, _, review, _, wpm = quality(world, rid)
    assert (speech, uncovered, review, wpm) == (120.0, 0.0, False, 100.0)  # 200 words over 2 minutes
    second = world.runner.requests[-1]
    assert second.start == 60.0 and [(s.start, s.end) for s in second.previous] == [(0.0, 60.0)]


def test_attempts_that_time_out_before_any_word_decode_a_shorter_first_piece(world: World) -> None:
    """Short limits still make progress: each timeout in a row without progress halves the first piece,
    and a piece decoded without words still moves the resume point."""

    path_name = "short-limit.m4a"
    rid = world.add(path_name, [Info(120.0), AttemptTimeout(1)])
    world.run(rid)
    world.run(rid)
    assert [r.first_piece for r in world.runner.requests] == [None, 15.0]
    world.runner.scripts[str(world.inbox / path_name)] = [Info(120.0), Reached(7.4), AttemptTimeout(1)]
    world.run(rid)
    assert world.runner.requests[-1].first_piece == 7.5
    world.sql("UPDATE recordings SET retry_count = 0, status = 'queued', not_before = NULL WHERE id = :id",
              id=world.key(rid))  # fmt: skip
    world.runner.scripts[str(world.inbox / path_name)] = speech(120.0, "hello")
    world.run(rid)
    last = world.runner.requests[-1]
    assert (last.start, last.first_piece) == (7.4, None)  # resumed where the silent piece ended; progress: no halving
    assert [r[0] for r in runs(world, rid)] == ["timeout", "timeout", "timeout", "succeeded"]


def test_an_attempt_that_dies_while_diarizing_leaves_the_next_to_finish_without_turns(world: World) -> None:
    """The time limit lands after decoding, while the turns are looked for: that attempt is a timeout, its
    segments are kept, and the next one completes the call without turns, flagged, instead of trying again."""
    said = [Info(20.0), Segment(0, 9, " hello there"), Segment(10, 20, " yes hello"), Reached(20.0)]
    rid = world.add("mono.m4a", [*said, Diarizing(), AttemptTimeout(5)])
    assert world.run(rid).status == "queued"
    assert runs(world, rid) == [("timeout", "Timeout exceeded: TimeLimitExceeded(5)")]
    world.runner.scripts[str(world.inbox / "mono.m4a")] = [Info(20.0), Done("en", 1.0)]
    assert world.run(rid).status == "completed"
    first, second = world.runner.requests
    assert first.diarize == {"max_speakers": 2, "find": True} and second.diarize == {"max_speakers": 2, "find": False}
    assert second.start == 20.0  # nothing decoded again
    status, retries, _, transcript, _ = recording(world, rid)
    assert (status, retries, transcript) == ("completed", 1, "hello there yes hello")
    error, review, reasons = world.one(
        "SELECT speaker_error, needs_review, review_reasons FROM recordings WHERE id = :id", id=world.key(rid)
    )
    assert error == "diarization stopped: Timeout exceeded: TimeLimitExceeded(5)"
    assert review and f"speaker turns: none ({error})" in reasons


def test_turns_from_the_model_are_stored_at_once_and_label_the_words(world: World) -> None:
    words = (
        (0.0, 1.0, " Hello,", 0.9),
        (1.0, 2.0, " agent.", 0.9),
        (3.0, 4.0, " Hi,", 0.9),
        (4.0, 5.0, " caller.", 0.9),
    )
    turns = (Turn(0.0, 2.5, 0), Turn(2.5, 6.0, 1))
    script = [
        Info(6.0),
        Segment(0, 5, " Hello, agent. Hi, caller.", words=words),
        Turns(Diarization(turns, 2, 0.2)),
        WorkerLost("x"),
    ]
    rid = world.add("two.m4a", script)
    assert world.run(rid).status == "queued"  # the worker died after the turns were found: they are kept
    [(stored,)] = world.all("SELECT speaker_turns FROM recordings WHERE id = :id", id=world.key(rid))
    assert Diarization.loads(stored) == Diarization(turns, 2, 0.2)
    world.runner.scripts[str(world.inbox / "two.m4a")] = [Info(6.0), Done("en", 1.0)]
    assert world.run(rid).status == "completed"
    assert world.runner.requests[1].diarize == {"max_speakers": 2, "find": False}
    rows = world.all("SELECT speaker, text FROM segments WHERE recording_id = :id ORDER BY start", id=world.key(rid))
    assert rows == [("speaker 1", "Hello, agent."), ("speaker 2", "Hi, caller.")]
    assert (world.out / "two.txt").read_text() == "speaker 1: Hello, agent.\nspeaker 2: Hi, caller.\n"
    doc = json.loads((world.out / "two.json").read_text())
    assert [s["speaker"] for s in doc["speakers"]["speakers"]] == ["speaker 1", "speaker 2"]
