"""The diarization metrics of tests/two_voices.py: DER and words given to the right speaker (pure, no audio)."""

from __future__ import annotations

import pytest

from two_voices import Line, der, truth_spans, words_right

REFERENCE = [(0.0, 4.0, 0), (5.0, 9.0, 1), (10.0, 12.0, 0)]  # 10 s of speech


def test_perfect_hypothesis_has_no_error() -> None:
    result = der(REFERENCE, REFERENCE)
    assert result["der"] == pytest.approx(0.0)
    assert result["reference_seconds"] == pytest.approx(10.0)
    assert result["mapping"] == {0: 0, 1: 1}


def test_swapped_labels_map_back() -> None:
    hypothesis = [(0.0, 4.0, "B"), (5.0, 9.0, "A"), (10.0, 12.0, "B")]
    result = der(REFERENCE, hypothesis)
    assert result["der"] == pytest.approx(0.0)
    assert result["mapping"] == {"A": 1, "B": 0}


def test_one_speaker_for_all_confuses_the_smaller_one() -> None:
    result = der(REFERENCE, [(0.0, 12.0, 0)])
    # 6 s of speaker 0 map to it; speaker 1's 4 s are confusion; the silence 4-5 s and 9-10 s is false alarm
    assert result["confusion"] == pytest.approx(0.4)
    assert result["false_alarm"] == pytest.approx(0.2)
    assert result["missed"] == pytest.approx(0.0)
    assert result["der"] == pytest.approx(0.6)


def test_missed_half() -> None:
    reference = [(0.0, 2.0, 0), (2.0, 4.0, 1)]
    result = der(reference, [(0.0, 2.0, 0)])
    assert result["missed"] == pytest.approx(0.5)
    assert result["confusion"] == pytest.approx(0.0)
    assert result["der"] == pytest.approx(0.5)


def test_overlap_counts_both_reference_speakers() -> None:
    reference = [(0.0, 5.0, 0), (3.0, 6.0, 1)]  # 2 s of overlap: 8 s of reference speech
    single = der(reference, [(0.0, 5.0, 0), (5.0, 6.0, 1)])
    assert single["reference_seconds"] == pytest.approx(8.0)
    assert single["missed"] == pytest.approx(2 / 8)  # a one-speaker hypothesis misses one voice in the overlap
    assert single["confusion"] == pytest.approx(0.0)
    both = der(reference, reference)
    assert both["der"] == pytest.approx(0.0)


def test_extra_hypothesis_speaker_is_confusion() -> None:
    hypothesis = [(0.0, 4.0, 0), (5.0, 9.0, 1), (10.0, 12.0, 2)]  # a third speaker for speaker 0's second line
    result = der(REFERENCE, hypothesis)
    assert result["confusion"] == pytest.approx(0.2)
    assert len(result["mapping"]) == 2


def test_empty_hypothesis_misses_everything() -> None:
    assert der(REFERENCE, [])["missed"] == pytest.approx(1.0)


def test_lines_are_accepted_as_reference() -> None:
    lines = [Line(0.0, 1.0, 0, "yes"), Line(1.5, 3.0, 1, "okay then")]
    assert truth_spans(lines) == [(0.0, 1.0, 0), (1.5, 3.0, 1)]
    assert der(lines, truth_spans(lines))["der"] == pytest.approx(0.0)


def test_words_right_maps_names_and_skips_overlaps() -> None:
    reference = [(0.0, 5.0, 0), (4.0, 8.0, 1), (9.0, 10.0, 0)]
    words = [
        (0.0, 1.0, "hello", "speaker 2"),
        (1.0, 2.0, "there", "speaker 2"),
        (2.0, 3.0, "wrong", "speaker 1"),
        (4.2, 4.6, "over", "speaker 1"),  # midpoint in the overlap 4-5 s: not counted
        (6.0, 7.0, "yes", "speaker 1"),
        (8.2, 8.6, "gap", "speaker 1"),  # outside every line: not counted
        (9.0, 10.0, "bye", None),  # no speaker: wrong
    ]
    result = words_right(words, reference)
    assert result["mapping"] == {"speaker 2": 0, "speaker 1": 1}
    assert (result["counted"], result["right"], result["uncounted"]) == (5, 3, 2)
    assert result["share"] == pytest.approx(0.6)


def test_words_right_with_nothing_counted() -> None:
    assert words_right([], REFERENCE)["share"] is None
