"""Speaker turns given to words, and a call's speaker figures (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from transcriber import speakers
from transcriber.diarization import cluster, windows
from transcriber.segments import Segment
from transcriber.speakers import Diarization, Figures, Turn


def words(*items: tuple[float, float, str]) -> tuple[tuple[float, float, str, float], ...]:
    return tuple((a, b, w, 0.9) for a, b, w in items)


LABELS = ["agent", "customer"]


def test_names_follow_first_speech_and_the_configured_labels():
    assert speakers.names(3) == ["speaker 1", "speaker 2", "speaker 3"]
    assert speakers.names(3, ("agent", "customer")) == ["agent", "customer", "speaker 3"]


def test_a_turn_change_inside_a_segment_splits_it_at_the_words():
    said = words((0.0, 0.5, " Thank"), (0.5, 1.0, " you."), (2.0, 2.5, " Yes,"), (2.5, 3.9, " hello."))
    segment = Segment(0.0, 4.0, " Thank you. Yes, hello.", words=said)
    turns = [Turn(0.0, 1.2, 0), Turn(1.8, 4.0, 1)]
    pieces = speakers.assign([segment], turns, LABELS)
    assert [(p.speaker, p.text, p.start, p.end) for p in pieces] == [
        ("agent", "Thank you.", 0.0, 1.0),
        ("customer", "Yes, hello.", 2.0, 4.0),
    ]
    assert [len(p.words or ()) for p in pieces] == [2, 2]


def test_words_go_by_their_own_time_not_the_segment_midpoint():
    # The midpoint (5.0) lies in the customer's turn, but every word is the agent's.
    said = words((0.2, 0.6, " One"), (0.7, 1.1, " two"), (1.2, 1.6, " three"))
    segment = Segment(0.0, 10.0, " One two three", words=said)
    pieces = speakers.assign([segment], [Turn(0.0, 2.0, 0), Turn(3.0, 10.0, 1)], LABELS)
    assert [(p.speaker, p.text) for p in pieces] == [("agent", " One two three")]


def test_one_word_between_two_of_the_other_speaker_stays_with_them():
    segment = Segment(0.0, 3.0, " a b c", words=words((0.0, 0.9, " a"), (1.0, 1.4, " b"), (1.5, 3.0, " c")))
    turns = [Turn(0.0, 0.95, 0), Turn(0.95, 1.45, 1), Turn(1.45, 3.0, 0)]  # a boundary jitter of one word
    assert [p.speaker for p in speakers.assign([segment], turns, LABELS)] == ["agent"]


def test_a_segment_without_words_goes_to_the_turn_it_overlaps_most():
    segments = [Segment(0.0, 3.0, "first"), Segment(2.5, 9.0, "second"), Segment(20.0, 21.0, "after every turn")]
    turns = [Turn(0.0, 3.0, 0), Turn(3.0, 9.0, 1)]
    assert [p.speaker for p in speakers.assign(segments, turns, LABELS)] == ["agent", "customer", "customer"]


def test_no_turns_leave_segments_as_they_are():
    segments = [Segment(0.0, 1.0, "x", speaker="caller")]
    assert speakers.assign(segments, [], LABELS) == segments


def test_windows_become_turns_numbered_in_order_of_first_speech():
    spans = windows([(0.0, 4.0), (5.0, 5.2), (6.0, 7.0)])
    assert spans[0] == (0.0, 1.5) and spans[-1] == (6.0, 7.0)  # a short stretch is one window; 0.2 s none
    labels = [7 if (a + b) / 2 < 2.5 else 3 for a, b in spans]  # cluster ids mean nothing: first voice is 0
    turns = speakers.windows_to_turns(spans, labels, [(0.0, 4.0), (6.0, 7.0)])
    assert [t.speaker for t in turns] == [0, 1, 1]  # silence between two stretches of one voice stays out
    assert turns[0].start == 0.0 and turns[1].end == 4.0 and (turns[2].start, turns[2].end) == (6.0, 7.0)
    assert 1.5 < turns[0].end < 3.5


def test_diarization_round_trips_through_its_stored_form():
    found = Diarization((Turn(0.0, 1.5, 0), Turn(1.5, 3.25, 1)), 2, 0.42)
    assert Diarization.loads(found.dumps()) == found
    assert Diarization.loads(None) is None
    assert found.spans(LABELS) == [(0.0, 1.5, "agent"), (1.5, 3.25, "customer")]


def test_figures_of_a_call():
    speech = [
        (0.0, 10.0, "agent"),
        (4.0, 4.5, "customer"),  # a backchannel inside the agent's turn: not a turn of its own
        (11.0, 20.0, "customer"),
        (19.0, 25.0, "agent"),  # one second of overlap
        (26.0, 30.0, "agent"),
    ]
    got = speakers.figures(speech, 40.0, source="diarization", order=LABELS, similarity=0.3)
    agent, customer = got.speakers
    assert (agent.speaker, agent.talk_seconds, agent.turns, agent.longest_monologue_seconds) == ("agent", 20.0, 2, 11.0)
    assert (customer.talk_seconds, customer.turns, customer.longest_monologue_seconds) == (9.5, 1, 9.0)
    assert agent.share == pytest.approx(20 / 29.5, abs=1e-3)
    assert got.turns == 3
    assert got.overlap_seconds == 1.5  # the backchannel (0.5 s) and the turn change (1 s)
    assert got.silence_seconds == 40.0 - 28.0  # speech: 0-10, 11-25, 26-30
    assert Figures.loads(got.dumps()) == got
    lines = got.describe()
    assert lines[0].startswith("agent: 20.0 s (68%), 2 turns") and "overlap 1.5 s" in lines[-1]


def test_a_speaker_who_never_spoke_is_listed_with_zero():
    got = speakers.figures([(0.0, 5.0, "caller")], 5.0, source="channels", order=("caller", "callee"))
    assert [(s.speaker, s.talk_seconds, s.turns) for s in got.speakers] == [("caller", 5.0, 1), ("callee", 0.0, 0)]


def test_review_reasons():
    assert speakers.review_reason(1, 2, 120.0, None).startswith("speaker turns: one voice found in 02:00")
    assert speakers.review_reason(1, 2, 10.0, None) is None  # too little speech to say
    assert speakers.review_reason(1, 1, 120.0, None) is None  # one speaker was asked for
    assert "hard to tell apart" in (speakers.review_reason(2, 2, 120.0, 0.72) or "")
    assert speakers.review_reason(2, 2, 120.0, 0.3) is None


def test_of_call_mono_stereo_and_failed():
    found = Diarization((Turn(0.0, 40.0, 0),), 1, None)
    mono = speakers.of_call(found, None, [], 60.0, configured=(), max_speakers=2, side_names=("caller", "callee"))
    assert mono.figures is not None and mono.figures.source == "diarization"
    assert mono.labeller is None  # one voice: the text stays plain
    assert mono.review and "one voice" in mono.review
    two = Diarization((Turn(0.0, 20.0, 0), Turn(20.0, 40.0, 1)), 2, 0.2)
    labelled = speakers.of_call(two, None, [], 60.0, configured=("agent",), max_speakers=2, side_names=())
    assert labelled.labeller is not None and labelled.review is None
    assert [s.speaker for s in labelled.figures.speakers] == ["agent", "speaker 2"]  # type: ignore[union-attr]
    stereo = speakers.of_call(None, None, [(0.0, 3.0, "caller"), (3.0, 5.0, "callee")], 5.0, configured=(),
                              max_speakers=2, side_names=("caller", "callee"))  # fmt: skip
    assert stereo.labeller is None and stereo.figures is not None and stereo.figures.source == "channels"
    failed = speakers.of_call(None, "RuntimeError: boom", [(0.0, 3.0, None)], 5.0, configured=(), max_speakers=2,
                              side_names=("caller", "callee"))  # fmt: skip
    assert failed.figures is None and failed.review == "speaker turns: none (RuntimeError: boom)"


def _voices(rng: np.random.Generator, centres: list[np.ndarray], counts: list[int], noise: float) -> np.ndarray:
    return np.concatenate([c + noise * rng.standard_normal((n, len(c))) for c, n in zip(centres, counts, strict=True)])


def test_clustering_finds_two_voices_and_never_more_than_allowed():
    rng = np.random.default_rng(0)
    centres = [rng.standard_normal(192) for _ in range(4)]
    two = _voices(rng, centres[:2], [60, 25], 0.3)
    labels, similarity = cluster(two, 2)
    assert len(set(labels[:60])) == 1 and len(set(labels[60:])) == 1 and labels[0] != labels[60]
    assert similarity is not None and similarity < 0.5
    four = _voices(rng, centres, [30, 30, 30, 30], 0.3)
    assert len(set(cluster(four, 2)[0].tolist())) == 2
    assert len(set(cluster(four, 4)[0].tolist())) == 4


def test_one_voice_stays_one_and_outliers_do_not_become_speakers():
    rng = np.random.default_rng(1)
    voice = rng.standard_normal(192)
    windows_of_one = _voices(rng, [voice], [80], 0.3)
    outliers = rng.standard_normal((2, 192)) * 3  # two odd windows (a cough, a click)
    labels, similarity = cluster(np.concatenate([windows_of_one, outliers]), 2)
    assert set(labels.tolist()) == {0} and similarity is None
    assert cluster(np.zeros((0, 192)), 2)[0].size == 0
