"""Quality figures and the needs_review bounds; the repetition guard."""

from __future__ import annotations

import pytest

from transcriber.quality import ScoredSegment, assess, drop_repeats


def seg(text: str, start: float = 0, end: float = 10, logprob: float = -0.3, no_speech: float = 0.05) -> ScoredSegment:
    return ScoredSegment(start, end, text, logprob, no_speech)


def test_a_clean_call_needs_no_review() -> None:
    q = assess([seg("one two three four five " * 4, 0, 10)], speech_seconds=10, language_probability=0.98)
    assert (q.avg_logprob, q.no_speech_prob, q.words_per_minute, q.needs_review) == (-0.3, 0.05, 120.0, False)


@pytest.mark.parametrize(
    ("segments", "speech", "language_p", "reason"),
    [
        ([seg("hello there friend")], 10, 0.3, "language uncertain"),
        ([seg("hello there friend", logprob=-1.4)], 10, 0.9, "low confidence"),
        ([seg("hello there friend", no_speech=0.8)], 10, 0.9, "no speech was heard"),
        ([seg("word " * 100)], 10, 0.9, "repeated or invented"),
        ([seg("just two")], 120, 0.9, "speech missed"),
    ],
)
def test_each_bound_flags_the_transcript(segments, speech, language_p, reason) -> None:  # type: ignore[no-untyped-def]
    q = assess(segments, speech_seconds=speech, language_probability=language_p)
    assert q.needs_review and len(q.reasons) == 1 and reason in q.reasons[0]


def test_silence_has_no_figures_and_no_flag() -> None:
    q = assess([], speech_seconds=0.0, language_probability=None)
    assert (q.avg_logprob, q.words_per_minute, q.needs_review) == (None, None, False)


def test_a_verbatim_loop_is_cut_after_two() -> None:
    texts = ["Thank you.", " thank  you. ", "Thank you.", "Thank you.", "Bye.", "Thank you."]
    assert drop_repeats(texts) == [True, True, False, False, True, True]
