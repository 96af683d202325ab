"""Coverage arithmetic: speech minus the time that has text, what is repaired, what is flagged."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from transcriber import coverage
from transcriber.coverage import Gap, describe, measure, merge, subtract, uncovered
from transcriber.quality import ScoredSegment, assess
from transcriber.segments import Segment


@pytest.mark.parametrize(
    ("spans", "gap", "expected"),
    [
        ([], 0.0, []),
        ([(5, 6), (1, 2)], 0.0, [(1, 2), (5, 6)]),  # sorted
        ([(1, 3), (2, 4)], 0.0, [(1, 4)]),  # overlapping
        ([(1, 2), (2, 3)], 0.0, [(1, 3)]),  # touching
        ([(1, 2), (2.5, 3)], 0.0, [(1, 2), (2.5, 3)]),
        ([(1, 2), (2.5, 3)], 1.0, [(1, 3)]),  # closer than the gap
        ([(1, 5), (2, 3)], 0.0, [(1, 5)]),  # contained
        ([(3, 3), (4, 2)], 0.0, []),  # empty and reversed spans dropped
    ],
)
def test_merge(spans, gap, expected) -> None:  # type: ignore[no-untyped-def]
    assert merge(spans, gap=gap) == expected


@pytest.mark.parametrize(
    ("spans", "cuts", "expected"),
    [
        ([(0, 10)], [], [(0, 10)]),
        ([(0, 10)], [(0, 10)], []),
        ([(0, 10)], [(-5, 20)], []),
        ([(0, 10)], [(2, 4)], [(0, 2), (4, 10)]),
        ([(0, 10)], [(2, 4), (6, 8)], [(0, 2), (4, 6), (8, 10)]),
        ([(0, 10)], [(6, 8), (2, 4)], [(0, 2), (4, 6), (8, 10)]),  # cuts in any order
        ([(0, 10)], [(-1, 3), (9, 12)], [(3, 9)]),  # cuts over the edges
        ([(0, 2), (5, 9)], [(1, 6)], [(0, 1), (6, 9)]),  # one cut across two spans
        ([(0, 2)], [(3, 4)], [(0, 2)]),  # a cut outside
    ],
)
def test_subtract(spans, cuts, expected) -> None:  # type: ignore[no-untyped-def]
    assert subtract(spans, cuts) == expected


def seg(start: float, end: float, text: str = " words", speaker: str | None = None) -> Segment:
    return Segment(start, end, text, speaker)


def test_segments_with_words_cover_their_time_and_a_margin() -> None:
    speech = [(0.0, 10.0)]
    assert uncovered(speech, [seg(0.3, 9.6)]) == []  # within COVER_PAD of the edges: covered
    assert uncovered(speech, [seg(0.0, 4.0), seg(6.0, 10.0)]) == [(4.5, 5.5)]
    assert uncovered(speech, [seg(0.0, 4.0), seg(5.0, 10.0)]) == []  # 0 s left after the margins


def test_a_segment_without_words_covers_nothing() -> None:
    assert uncovered([(0.0, 10.0)], [seg(0.0, 10.0, "  ")]) == [(0.0, 10.0)]


def test_short_leftovers_are_word_edges_not_missed_speech() -> None:
    speech = [(0.0, 10.0)]
    assert uncovered(speech, [seg(0.0, 4.0), seg(5.3, 10.0)]) == []  # 0.3 s: below REPAIR_SECONDS
    assert uncovered(speech, [seg(0.0, 4.0), seg(5.3, 10.0)], min_seconds=0.1) == [(4.5, 4.8)]


def test_nearby_uncovered_stretches_are_one() -> None:
    speech = [(0.0, 2.0), (2.5, 4.0)]  # two VAD spans 0.5 s apart, no text at all
    assert uncovered(speech, []) == [(0.0, 4.0)]


def test_the_sides_of_a_two_channel_call_are_measured_apart() -> None:
    speech = [Gap(0, 10, "caller"), Gap(0, 10, "callee")]
    measured = measure(speech, [seg(0, 10, " hello", "caller")])
    assert measured.gaps == (Gap(0, 10, "callee"),)
    assert measured.speech_seconds == 20.0
    assert measured.uncovered_seconds == 10.0


def test_coverage_of_a_complete_transcript() -> None:
    measured = measure([Gap(1, 5), Gap(8, 9)], [seg(1, 5), seg(8, 9)])
    assert (measured.speech_seconds, measured.gaps, measured.gaps_json()) == (5.0, (), None)


def test_gaps_are_stored_as_json_and_only_long_ones_are_for_review() -> None:
    measured = measure([Gap(0, 60)], [seg(0, 10), seg(12.0, 40), seg(45, 60)])
    assert [(g.start, g.end) for g in measured.gaps] == [(10.5, 11.5), (40.5, 44.5)]
    assert json.loads(measured.gaps_json() or "") == [{"start": 10.5, "end": 11.5}, {"start": 40.5, "end": 44.5}]
    assert measured.review_gaps() == [Gap(40.5, 44.5)]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "00:00"), (59.9, "00:59"), (264.1, "04:24"), (3599, "59:59"), (3600, "1:00:00"), (4000, "1:06:40")],
)
def test_clock(seconds: float, text: str) -> None:
    assert coverage.clock(seconds) == text


def test_describe_names_where_to_listen() -> None:
    assert describe([Gap(264.1, 286.7)]) == "22.6 s of speech without text at 04:24-04:46"
    assert describe([Gap(1, 5, "callee")]) == "4.0 s of speech without text at 00:01-00:05 (callee)"
    many = [Gap(i * 10, i * 10 + 3 + i) for i in range(7)]
    text = describe(many, limit=2)
    assert text.endswith("at 00:50-00:58, 01:00-01:09 and 5 more"), text


def test_uncovered_speech_is_a_reason_for_review() -> None:
    segments = [ScoredSegment(0, 10, "one two three four five " * 4, -0.3, 0.05)]
    q = assess(segments, speech_seconds=30, language_probability=0.98, gaps=[Gap(264.1, 286.7)])
    assert q.reasons == ["22.6 s of speech without text at 04:24-04:46"]


def test_with_word_timings_each_word_covers_its_own_time() -> None:
    """A segment stretched over two sentences while holding the words of one covers only that one."""
    stretched = Segment(161.2, 168.2, " References printed on the Mac and", words=(
        (161.3, 161.9, " References", 0.9), (161.9, 162.4, " printed", 0.9), (162.4, 162.6, " on", 0.9),
        (162.6, 162.8, " the", 0.9), (162.8, 163.2, " Mac", 0.9), (163.2, 163.9, " and", 0.9),
    ))  # fmt: skip
    speech = [(161.1, 164.1), (164.9, 167.9)]
    assert uncovered(speech, [replace(stretched, words=None)]) == []  # by segment: looks covered
    assert uncovered(speech, [stretched]) == [(164.9, 167.9)]  # by word: the second reading has no text


def test_a_word_stretched_over_what_it_did_not_say_covers_one_second() -> None:
    """Alignment can time one word over a gap and the start of the next reading (" is" 9.86-13.92 s, seen on
    the read-back): it covers only its first second, so the speech after it is decoded again."""
    words = ((8.92, 9.14, " My", 0.9), (9.14, 9.52, " count", 0.9), (9.52, 9.86, " number", 0.9),
             (9.86, 13.92, " is", 0.9), (13.92, 14.12, " 4", 0.9))  # fmt: skip
    stretched = Segment(8.92, 14.12, " My count number is 4", words=words)
    assert uncovered([(8.63, 11.56), (12.31, 15.21)], [stretched]) == [(11.36, 13.42)]


@pytest.mark.parametrize(
    ("start", "end", "text", "belongs"),
    [
        (156.3, 161.3, " the reading", True),  # the clip's one segment: holds the whole stretch
        (156.3, 157.0, " tail of the last", False),  # the context before
        (160.5, 161.3, " head of the next", False),  # the context after
        (157.5, 160.0, " inside", True),
        (157.5, 160.0, "  ", False),  # no words
    ],
)
def test_which_repaired_segments_belong_to_the_stretch(start: float, end: float, text: str, belongs: bool) -> None:
    from transcriber.decoding import _belongs

    assert _belongs(Segment(start, end, text), 157.3, 160.3) is belongs


def test_a_repair_does_not_repeat_words_already_standing_at_that_time() -> None:
    from transcriber.decoding import _already_said

    there = [Segment(161.0, 163.8, " The reference is printed.")]
    assert _already_said(Segment(161.3, 163.9, " the  reference is printed."), there)
    assert not _already_said(Segment(156.3, 161.3, " The reference is printed."), there)  # the same words earlier
    assert not _already_said(Segment(161.3, 163.9, " Something else."), there)
    assert not _already_said(Segment(161.3, 163.9, " The reference is printed.", "callee"), there)  # other side


def test_repaired_text_the_model_is_unsure_of_is_not_taken() -> None:
    from transcriber.decoding import REPAIR_MIN_LOGPROB, _confident

    assert _confident(Segment(0, 1, " the horizon", avg_logprob=-0.41))
    assert not _confident(Segment(0, 1, " in the art of youtube", avg_logprob=-0.99))  # speech played backwards
    assert _confident(Segment(0, 1, " edge", avg_logprob=REPAIR_MIN_LOGPROB))
