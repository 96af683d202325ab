"""A call whose name is not UTF-8 (Latin-1 bytes, as SMB shares hold them) is transcribed end to end.

Before issue 11 such a name made ``transcriber watch`` exit with ``UnicodeEncodeError`` on every
start, and nothing more was registered from any file. Real watcher, worker and beat; real model.
"""

from __future__ import annotations

import os
import sys

import pytest

from speech import SENTENCES, conversation, write_audio

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="Windows names are UTF-16: they are never bytes that fail"),
]


def test_calls_named_in_latin1_or_with_line_breaks_are_transcribed_with_their_own_words(pipeline) -> None:
    inbox = os.fsencode(pipeline.watch_dir)
    calls = {  # exact name -> (readable name, sentences spoken, words the transcript must hold)
        b"Anruf M\xfcller 0586469010.m4a": ("Anruf Müller 0586469010.m4a", SENTENCES[:2], ("invoice", "printer")),
        b"two\nlines \xff.m4a": ("two\\nlines ÿ.m4a", SENTENCES[2:4], ("weekend", "technician")),
    }
    for name, (_, sentences, _) in calls.items():
        audio = write_audio(pipeline.tmp / "speech.m4a", conversation(sentences)).read_bytes()
        fd = os.open(inbox + b"/" + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, audio)
        os.close(fd)
    (pipeline.watch_dir / "Anruf Schmidt.m4a").write_bytes(
        write_audio(pipeline.tmp / "speech.m4a", conversation(SENTENCES[4:5])).read_bytes()
    )  # a plain name beside them: registered too, so nothing stopped the watcher
    pipeline.start("watch")
    pipeline.start("worker", "--pool=solo")
    pipeline.start("beat")

    pipeline.wait_for("three calls to finish", lambda: pipeline.all_settled(3), timeout=240)
    status = pipeline.statuses()
    assert set(status) == {readable for readable, _, _ in calls.values()} | {"Anruf Schmidt.m4a"}
    for readable, _, words in calls.values():
        state, retries, error, transcript = status[readable]
        assert (state, retries, error) == ("completed", 0, None), (readable, error)
        for word in words:
            assert word in transcript.lower(), (readable, transcript)
        assert "pickup" not in transcript.lower()  # its own words, not another call's
        txt = pipeline.output_dir / f"{os.path.splitext(readable)[0]}.txt"  # outputs carry the readable name
        assert txt.read_text(encoding="utf-8").split() == transcript.split()
    [(stored,)] = pipeline.query(
        "SELECT file_path_bytes FROM recordings WHERE file_name = 'Anruf Müller 0586469010.m4a'"
    )
    assert bytes(stored) == inbox + b"/Anruf M\xfcller 0586469010.m4a"  # the exact name, as the worker opened it
    watch_log = pipeline.full_log("watch")
    assert "unexpected error" not in watch_log and "Traceback" not in watch_log
    assert f"registered {pipeline.watch_dir}/Anruf M\\xfcller 0586469010.m4a (recorded as " in watch_log
