"""File names that are not text: what is stored and shown, and the exact path the worker opens.

Linux hands Python a name that is not UTF-8 with surrogate escapes (``os.fsdecode``): ``b"M\\xfcller"``
is ``"M\\udcfcller"``, which neither a database, a log file nor a broker message can encode.
"""

from __future__ import annotations

import os

import pytest

from transcriber.ingest import settle_time
from transcriber.names import path_bytes, printable, readable_path, real_path

LATIN1 = os.fsdecode(b"/in/Anruf M\xfcller 0586469010.m4a")  # a Latin-1 name, as SMB shares hold them


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        (b"/in/call.m4a", "/in/call.m4a"),
        ("/in/café ñandú 通话.mp3".encode(), "/in/café ñandú 通话.mp3"),  # UTF-8: as it is
        (b"/in/Anruf M\xfcller 0586469010.m4a", "/in/Anruf Müller 0586469010.m4a"),  # Latin-1
        (b"/in/Gr\xfc\xdfe \x80 \x84.m4a", "/in/Grüße € „.m4a"),  # Windows-1252 beyond Latin-1
        (b"/in/bad \x81\xff.m4a", "/in/bad \\x81ÿ.m4a"),  # not cp1252 either: Latin-1, the control escaped
        (b"/in/B\xc3\xbcro/Anruf M\xfcller.m4a", "/in/Büro/Anruf Müller.m4a"),  # a UTF-8 folder, a Latin-1 name
        (b"/in/half \xc3.m4a", "/in/half Ã.m4a"),  # a UTF-8 sequence cut short
        (b"/in/two\nlines.m4a", "/in/two\\nlines.m4a"),
        (b"/in/tab\tbell\x07.m4a", "/in/tab\\tbell\\x07.m4a"),
        ("/in/sep\u2028x.m4a".encode(), "/in/sep\\u2028x.m4a"),  # a line separator would break a log line
        ("/in/no\u00a0break zero\u200dwidth.m4a".encode(), "/in/no\u00a0break zero\u200dwidth.m4a"),  # kept
    ],
)
def test_readable_path(raw: bytes, readable: str) -> None:
    path = os.fsdecode(raw)
    shown = readable_path(path)
    assert shown == readable
    shown.encode("utf-8")  # storable and loggable: never a surrogate
    assert "\n" not in shown
    kept = path_bytes(path)
    assert (kept is None) == (shown == path)
    assert real_path(shown, kept) == path  # the worker gets the exact name back
    assert os.fsencode(real_path(shown, kept)) == raw


def test_a_readable_path_is_returned_as_it_is() -> None:
    path = "/in/Call recording +18134353769_200301_171119.m4a"
    assert readable_path(path) is path and path_bytes(path) is None and real_path(path, None) is path


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain", "plain"),
        (LATIN1, "/in/Anruf M\\xfcller 0586469010.m4a"),  # the exact bytes, visible
        ("a\nb\r\x1b[31m", "a\\nb\\r\\x1b[31m"),  # no forged log lines, no terminal escapes
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),  # Windows can hand out unpaired UTF-16
        ("Müller 通话", "Müller 通话"),
    ],
)
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown
    shown.encode("utf-8")


@pytest.mark.parametrize(
    ("base", "changes", "cap", "settle"),
    [
        (5.0, 0, 600.0, 5.0),  # a path that never changed after registration
        (5.0, 1, 600.0, 10.0),  # doubled each time it changed after it was registered
        (5.0, 3, 600.0, 40.0),
        (5.0, 7, 600.0, 600.0),  # up to the cap
        (5.0, 10_000, 600.0, 600.0),  # no overflow
        (900.0, 2, 600.0, 900.0),  # the cap never shortens the configured settle time
        (0.0, 5, 600.0, 0.0),  # settle 0 (take on first sight) stays 0
    ],
)
def test_settle_time(base: float, changes: int, cap: float, settle: float) -> None:
    assert settle_time(base, changes, cap) == settle
