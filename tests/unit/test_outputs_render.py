"""Transcript renderers: timestamps, txt, srt, vtt and json from one document."""

from __future__ import annotations

import json

import pytest

from transcriber.outputs import (
    RENDERERS,
    TranscriptDoc,
    format_timestamp,
    render_json,
    render_srt,
    render_txt,
    render_vtt,
)
from transcriber.segments import Segment
from transcriber.settings import OUTPUT_FORMAT_CHOICES

DOC = TranscriptDoc(
    source="/calls/Call recording +18134353769_200301_171119.m4a",
    segments=[
        Segment(0.0, 1.5, " Hello there. "),
        Segment(1.5, 2.0, "   "),  # silence the model returned as a blank segment
        Segment(3723.456, 3725.0, "Café, señor?"),
    ],
    language="en",
    duration=3725.0,
    model="base",
)
EMPTY = TranscriptDoc(source="silence.wav", segments=[], language=None, duration=None, model="tiny.en")


@pytest.mark.parametrize(
    ("seconds", "separator", "expected"),
    [
        (0, ",", "00:00:00,000"),
        (1.5, ",", "00:00:01,500"),
        (3723.456, ",", "01:02:03,456"),
        (3723.456, ".", "01:02:03.456"),
        (5999.999, ",", "01:39:59,999"),  # past 99 minutes the hours count, not the minutes
        (59.9996, ",", "00:01:00,000"),  # rounding carries into the next minute
        (360000, ".", "100:00:00.000"),
        (-0.2, ",", "00:00:00,000"),
    ],
)
def test_format_timestamp(seconds: float, separator: str, expected: str) -> None:
    assert format_timestamp(seconds, separator) == expected


def test_render_txt_one_line_per_spoken_segment() -> None:
    assert render_txt(DOC) == "Hello there.\nCafé, señor?\n"


def test_render_srt_numbers_only_spoken_segments() -> None:
    assert render_srt(DOC) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n"
        "\n"
        "2\n01:02:03,456 --> 01:02:05,000\nCafé, señor?\n"
    )  # fmt: skip


def test_render_vtt_has_header_and_dot_timestamps() -> None:
    assert render_vtt(DOC) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.500\nHello there.\n"
        "\n"
        "01:02:03.456 --> 01:02:05.000\nCafé, señor?\n"
    )  # fmt: skip


def test_render_json_fields() -> None:
    body = json.loads(render_json(DOC))
    assert set(body) == {"source", "language", "duration", "model", "text", "segments"}
    assert body["source"] == DOC.source
    assert (body["language"], body["duration"], body["model"]) == ("en", 3725.0, "base")
    assert body["text"] == "Hello there. Café, señor?"
    spoken = [segment for segment in body["segments"] if segment["text"]]
    assert spoken == [
        {"start": 0.0, "end": 1.5, "text": "Hello there."},
        {"start": 3723.456, "end": 3725.0, "text": "Café, señor?"},
    ]


def test_render_json_keeps_non_ascii_readable() -> None:
    assert "Café, señor?" in render_json(DOC)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("txt", ""), ("srt", ""), ("vtt", "WEBVTT\n\n")],
)
def test_empty_transcript(fmt: str, expected: str) -> None:
    assert RENDERERS[fmt](EMPTY) == expected


def test_empty_transcript_json() -> None:
    body = json.loads(render_json(EMPTY))
    assert (body["text"], body["segments"], body["language"], body["duration"]) == ("", [], None, None)


def test_every_configurable_format_has_a_renderer() -> None:
    assert set(RENDERERS) == set(OUTPUT_FORMAT_CHOICES)
