"""The call's facts at intake, on real Postgres and on the embedded SQLite: real files dropped into the folder and
registered by ``transcriber watch --once`` (the settings wired as in production), then found by the operator's
filters and shown by ``status ID``; and migration 0005 filling in rows registered before it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, update

from transcriber import lifecycle
from transcriber.cli import main
from transcriber.db import make_engine, make_session_factory, transaction
from transcriber.migrate import alembic_config, upgrade_to_head
from transcriber.tables import Recording

TRANSCRIBER = str(Path(sys.executable).parent / "transcriber")
MUELLER = "Anruf Müller 0586469010_200609_165234.m4a"
JOHN = "Call recording +18134353769_200301_171119.m4a"
JOHN_AGAIN = "Incoming_+1 813 435 3769_2020-03-02_08-00-00.mp3"
NOTES = "notes.m4a"


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The call recordings registered through the watcher with PHONE_REGION=DE and FILENAME_TIMEZONE=Europe/Berlin."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in (MUELLER, JOHN, JOHN_AGAIN, NOTES):
        (inbox / name).write_bytes(os.urandom(4096))  # the same bytes twice would be a duplicate
    values = {"DATABASE_URL": db_url, "WATCH_DIR": str(inbox), "DATA_DIR": str(tmp_path / "data"),
              "OUTPUT_DIR": str(tmp_path / "out"), "WATCH_SETTLE_SECONDS": "0", "PHONE_REGION": "DE",
              "FILENAME_TIMEZONE": "Europe/Berlin"}  # fmt: skip
    done = subprocess.run([TRANSCRIBER, "watch", "--once"], env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                          **values}, capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and "registered 4 new recording(s)" in done.stdout, done.stderr
    monkeypatch.chdir(tmp_path)  # the read-only commands below run in this process: no .env of the checkout
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def listed(capsys: pytest.CaptureFixture[str], command_name: str, *args: str) -> list[str]:
    code, out, err = run(capsys, command_name, "--json", *args)
    assert code == 0, err
    return sorted(row["file_name"] for row in json.loads(out))


def test_a_dropped_call_lands_with_its_facts(env: dict[str, str]) -> None:
    engine = make_engine(env["DATABASE_URL"])
    try:
        with make_session_factory(engine)() as session:
            rows = {r.file_name: r for r in session.scalars(select(Recording))}
    finally:
        engine.dispose()
    mueller, john, again, notes = rows[MUELLER], rows[JOHN], rows[JOHN_AGAIN], rows[NOTES]
    assert (mueller.phone_number, mueller.contact, mueller.direction) == ("+49586469010", "Müller", None)
    assert mueller.call_started_at == datetime(2020, 6, 9, 14, 52, 34, tzinfo=UTC)  # 16:52 in Berlin, summer
    assert (john.phone_number, john.call_started_at) == ("+18134353769", datetime(2020, 3, 1, 16, 11, 19, tzinfo=UTC))
    assert (again.phone_number, again.direction) == ("+18134353769", "incoming")
    assert (notes.phone_number, notes.call_started_at, notes.contact, notes.direction) == (None, None, None, None)


FILTERS = [  # the arguments of `list`, and the names it must list: one intake serves them all
    (["--phone", "+18134353769"], [JOHN_AGAIN, JOHN]),
    (["--phone", "+1 813 435 3769"], [JOHN_AGAIN, JOHN]),
    (["--phone", "8134353769"], [JOHN_AGAIN, JOHN]),  # national digits, read as German, found by its end
    (["--phone", "0586 469010"], [MUELLER]),  # PHONE_REGION=DE: the same E.164 number as stored
    (["--phone", "+49 586 469010"], [MUELLER]),
    (["--phone", "4353769"], [JOHN_AGAIN, JOHN]),  # the last digits
    (["--phone", "+4415550000"], []),
    (["--contact", "MÜLLER"], [MUELLER]),
    (["--contact", "ül"], [MUELLER]),
    (["--called-since", "2020-03-01 16:11:19"], [JOHN_AGAIN, MUELLER, JOHN]),  # UTC, inclusive
    (["--called-since", "2020-03-01 16:11:20"], [JOHN_AGAIN, MUELLER]),
    (["--called-until", "2020-03-01"], [JOHN]),  # a bare date includes that day
    (["--called-since", "2020-03-02", "--called-until", "2020-03-02T07:00:01"], [JOHN_AGAIN]),  # 08:00 Berlin
    (["--phone", "8134353769", "--called-since", "2020-03-02"], [JOHN_AGAIN]),
    (["--status", "queued", "--contact", "nobody"], []),
]


def test_the_list_filters_find_the_call(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    found = {" ".join(args): listed(capsys, "list", *args) for args, _ in FILTERS}
    assert found == {" ".join(args): sorted(expected) for args, expected in FILTERS}


def test_status_list_and_failed_show_the_call(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--phone", "0586469010")
    assert code == 0 and "          call +49586469010, 2020-06-09 14:52:34 UTC, contact Müller" in out.splitlines()
    assert all(len(line) <= 80 for line in out.splitlines())

    code, out, _ = run(capsys, "status", "Müller")
    lines = out.splitlines()
    assert code == 0 and "call      +49586469010, 2020-06-09 14:52:34 UTC, contact Müller" in lines
    assert lines[lines.index("call      +49586469010, 2020-06-09 14:52:34 UTC, contact Müller") + 1].startswith(
        "duration  "
    )  # between the file and its figures
    code, out, _ = run(capsys, "status", JOHN_AGAIN, "--json")
    detail = json.loads(out)
    assert (detail["phone_number"], detail["call_started_at"], detail["contact"], detail["direction"]) == (
        "+18134353769", "2020-03-02T07:00:00+00:00", None, "incoming",
    )  # fmt: skip
    code, out, _ = run(capsys, "status", NOTES)
    assert code == 0 and not any(line.startswith("call ") for line in out.splitlines())  # nothing known: no line

    engine = make_engine(env["DATABASE_URL"])
    with make_session_factory(engine).begin() as session:  # failed as SQL would leave it (the lifecycle is elsewhere)
        session.execute(update(Recording).where(Recording.file_name.in_([JOHN, MUELLER])).values(status="failed"))
    engine.dispose()
    assert listed(capsys, "failed") == sorted([JOHN, MUELLER])
    assert listed(capsys, "failed", "--phone", "+1 813 435 3769") == [JOHN]
    assert listed(capsys, "failed", "--contact", "müll", "--called-until", "2020-06-09") == [MUELLER]
    assert listed(capsys, "failed", "--called-since", "2020-06-10") == []
    code, out, _ = run(capsys, "failed", "--phone", "+18134353769")
    assert code == 0 and "          call +18134353769, 2020-03-01 16:11:19 UTC" in out.splitlines()
    code, out, _ = run(capsys, "failed", "--json", "--phone", "+18134353769")
    [row] = json.loads(out)
    assert (row["phone_number"], row["call_started_at"]) == ("+18134353769", "2020-03-01T16:11:19+00:00")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--phone", "abc"], "--phone 'abc': expected a phone number (at least 3 digits)"),
        (["failed", "--phone", "+1"], "--phone '+1': expected a phone number"),
        (["list", "--contact", ""], "--contact '': expected a piece of the contact's name"),
        (["list", "--called-since", "yesterday"], "--called-since 'yesterday': expected a date (2026-03-01)"),
        (["failed", "--called-until", "2020-13-01"], "--called-until '2020-13-01': expected a date"),
        (["list", "--called-since", "2020-03-02", "--called-until", "2020-03-01T00:00"],
         "--called-until is not after --called-since"),
    ],
)  # fmt: skip
def test_bad_filter_values_are_one_line(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], message: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    code, out, err = run(capsys, *args)
    [line] = err.strip().splitlines()
    assert code == 1 and out == "" and line.startswith(f"transcriber: {message}")


def test_migration_0005_fills_in_the_facts_of_rows_registered_before_it(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    try:
        for n, name in enumerate((JOHN, MUELLER, NOTES, "Call recording +18134353769_201399_171119.m4a")):
            with transaction(sessions) as s:
                lifecycle.register_recording(s, file_path=f"/calls/{name}", file_name=name, file_size=1,
                                             content_sha256=f"{n:064d}", now=datetime.now(UTC))  # fmt: skip
        config = alembic_config(db_url)
        command.downgrade(config, "0004")  # the facts' columns go, the rows stay
        upgrade_to_head(db_url)
        with sessions() as s:
            facts = {
                r.file_name: (r.phone_number, r.call_started_at, r.contact, r.direction)
                for r in s.scalars(select(Recording))
            }
    finally:
        engine.dispose()
    assert facts == {  # built-in patterns only, in UTC: a migration reads no settings
        JOHN: ("+18134353769", datetime(2020, 3, 1, 17, 11, 19, tzinfo=UTC), None, None),
        MUELLER: ("0586469010", datetime(2020, 6, 9, 16, 52, 34, tzinfo=UTC), "Müller", None),
        NOTES: (None, None, None, None),
        "Call recording +18134353769_201399_171119.m4a": ("+18134353769", None, None, None),  # no such day
    }
