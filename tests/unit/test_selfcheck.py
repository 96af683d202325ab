"""The services' folder self-check: what each role checks, the report, and doctor --as-service's verdict."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from transcriber import selfcheck
from transcriber.doctor import FAIL, OK, WARN
from transcriber.settings import Settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def report_of(role: str, *checks: tuple[str, str, str], host: str = "app1", age: float = 60) -> dict[str, Any]:
    return {
        "role": role, "host": host, "pid": 42, "account": "NT SERVICE\\transcriber-worker",
        "checked_at": (NOW - timedelta(seconds=age)).isoformat(), "file": f"/data/service-checks/{role}-{host}.json",
        "checks": [{"name": n, "status": s, "detail": f"{p} {s}", "path": p} for n, s, p in checks],
    }  # fmt: skip


PATHS = {"WATCH_DIR": "\\\\nas\\calls\\inbox", "OUTPUT_DIR": "D:\\transcripts", "DATA_DIR": "C:\\app\\data"}
ALL_OK = [
    report_of("worker", ("WATCH_DIR", OK, PATHS["WATCH_DIR"]), ("OUTPUT_DIR", OK, PATHS["OUTPUT_DIR"])),
    report_of("beat", ("DATA_DIR", OK, PATHS["DATA_DIR"])),
    report_of("watcher", ("WATCH_DIR", OK, PATHS["WATCH_DIR"]), ("DATA_DIR", OK, PATHS["DATA_DIR"])),
]


def verdict(reports: list[dict[str, Any]]) -> dict[tuple[str, str], selfcheck.Finding]:
    return {(f.role, f.name): f for f in selfcheck.findings(reports, now=NOW, paths=PATHS)}


def test_every_role_reported_and_passed() -> None:
    found = verdict(ALL_OK)
    assert {f.status for f in found.values()} == {OK} and len(found) == 5
    worker = found["worker", "WATCH_DIR"]
    assert (worker.account, worker.host, worker.age_seconds) == ("NT SERVICE\\transcriber-worker", "app1", 60)


def test_a_failing_check_fails_and_keeps_its_words() -> None:
    failing = report_of("worker", ("WATCH_DIR", FAIL, PATHS["WATCH_DIR"]), ("OUTPUT_DIR", OK, PATHS["OUTPUT_DIR"]))
    found = verdict([failing, *ALL_OK[1:]])
    assert found["worker", "WATCH_DIR"].status == FAIL
    assert found["worker", "WATCH_DIR"].detail == f"{PATHS['WATCH_DIR']} fail"
    assert found["worker", "OUTPUT_DIR"].status == OK


def test_a_role_that_never_reported_warns() -> None:
    found = verdict(ALL_OK[:1])
    for role in ("beat", "watcher"):
        assert found[role, "report"].status == WARN
        assert found[role, "report"].detail.startswith(f"no report from the {role}: it has not started since")
        assert "cannot write DATA_DIR" in found[role, "report"].detail
    assert verdict([])["worker", "report"].status == WARN  # nothing at all: three warnings, no failure


def test_a_check_of_a_folder_set_differently_since_is_stale() -> None:
    """WATCH_DIR was changed (the fix, perhaps) after the worker checked it: its old FAIL says nothing now."""
    old = report_of("worker", ("WATCH_DIR", FAIL, "Z:\\inbox"), ("OUTPUT_DIR", OK, PATHS["OUTPUT_DIR"]), age=86400)
    stale = verdict([old, *ALL_OK[1:]])["worker", "WATCH_DIR"]
    assert stale.status == WARN and stale.age_seconds == 86400
    new = PATHS["WATCH_DIR"]
    assert stale.detail == f"checked Z:\\inbox, but WATCH_DIR is {new} now: restart the worker on app1 so it checks " \
                           "again"  # fmt: skip


def test_an_unreadable_report_warns_with_its_file(tmp_path: Path) -> None:
    (tmp_path / "worker-app1.json").write_text("{ half a report")
    reports = selfcheck.read_reports(tmp_path)
    [bad] = [f for f in selfcheck.findings(reports, now=NOW, paths=PATHS) if f.role == "?"]
    assert bad.status == WARN and bad.detail.startswith(f"{tmp_path / 'worker-app1.json'} cannot be read (")


def test_the_report_round_trips_and_one_host_can_be_chosen(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", watch_dir=tmp_path, output_dir=tmp_path / "out")
    written = selfcheck.report(settings, role="watcher", now=NOW)
    assert written is not None and written.parent == settings.data_dir / "service-checks"
    data = json.loads(written.read_text())
    assert data["account"] == selfcheck.account_name() and data["pid"] == os.getpid()
    assert data["checked_at"] == NOW.isoformat() and data["role"] == "watcher"
    assert [(c["name"], c["status"], c["path"]) for c in data["checks"]] == [
        ("WATCH_DIR", OK, str(tmp_path)), ("DATA_DIR", OK, str(settings.data_dir))
    ]  # fmt: skip
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temp file left behind
    assert len(selfcheck.read_reports(written.parent, host=data["host"])) == 1
    assert selfcheck.read_reports(written.parent, host="elsewhere") == []
    found = selfcheck.check_services(settings, now=NOW + timedelta(seconds=5))
    assert {(f.role, f.status) for f in found} == {("watcher", OK), ("worker", WARN), ("beat", WARN)}
    text = selfcheck.format_findings(found)
    assert f"watcher on {data['host']} (pid {os.getpid()}), checked as {data['account']} 5 s ago" in text


def test_a_report_that_cannot_be_written_is_logged_never_raised(tmp_path: Path, caplog: Any) -> None:
    (tmp_path / "data").write_text("a file where DATA_DIR should be")
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", watch_dir=tmp_path)
    with caplog.at_level(logging.ERROR, logger="transcriber.selfcheck"):
        assert selfcheck.report(settings, role="beat") is None
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"beat DATA_DIR: {tmp_path / 'data'}: cannot create it as ") for line in lines), lines
    assert any("cannot write" in line and "give" in line for line in lines), lines


def test_folder_checks_do_the_real_thing(tmp_path: Path) -> None:
    me = selfcheck.account_name()
    listed = selfcheck.check_folder("WATCH_DIR", tmp_path, write=False, account=me)
    assert (listed.status, listed.detail) == (OK, f"{tmp_path} listed as {me}")
    missing = selfcheck.check_folder("WATCH_DIR", tmp_path / "nope", write=False, account=me)
    assert missing.status == FAIL and missing.detail.endswith("create it, or point WATCH_DIR at the folder")
    made = selfcheck.check_folder("OUTPUT_DIR", tmp_path / "new" / "out", write=True, account=me)
    assert made.status == OK and list((tmp_path / "new" / "out").iterdir()) == []  # written, renamed, deleted
    (tmp_path / "file").write_text("")
    not_folder = selfcheck.check_folder("WATCH_DIR", tmp_path / "file", write=False, account=me)
    assert not_folder.status == FAIL and "point WATCH_DIR at a folder" in not_folder.detail


def test_each_role_checks_the_folders_it_uses(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, whisper_model_dir=tmp_path / "models")
    names = {role: [n for n, _, _ in selfcheck.folder_needs(settings, role)] for role in
             ("worker", "watcher", "beat", "metrics", "doctor")}  # fmt: skip
    assert names == {
        "worker": ["WATCH_DIR", "OUTPUT_DIR", "DATA_DIR", "WHISPER_MODEL_DIR"],
        "watcher": ["WATCH_DIR", "DATA_DIR"], "beat": ["DATA_DIR"], "metrics": ["DATA_DIR"],
        "doctor": ["WATCH_DIR", "OUTPUT_DIR", "DATA_DIR"],
    }  # fmt: skip
    writes = {n: w for n, _, w in selfcheck.folder_needs(settings, "worker")}
    assert writes == {"WATCH_DIR": False, "OUTPUT_DIR": True, "DATA_DIR": True, "WHISPER_MODEL_DIR": True}
    no_files = Settings(_env_file=None, output_formats="none")
    assert "OUTPUT_DIR" not in [n for n, _, _ in selfcheck.folder_needs(no_files, "worker")]
    unc = Settings(_env_file=None, watch_dir="\\\\nas\\calls\\inbox")  # kept as written, never made absolute
    assert str(selfcheck.folder_needs(unc, "watcher")[0][1]) == "\\\\nas\\calls\\inbox"


def test_the_account_on_windows_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Windows branch imports nothing Linux lacks; without secur32 it reads USERDOMAIN and USERNAME."""
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("USERDOMAIN", "NT SERVICE")
    monkeypatch.setenv("USERNAME", "transcriber-worker")
    assert selfcheck.account_name() == "NT SERVICE\\transcriber-worker"
    monkeypatch.delenv("USERDOMAIN")
    assert selfcheck.account_name() == "transcriber-worker"


def test_the_account_on_posix_is_the_effective_user() -> None:
    import pwd

    assert selfcheck.account_name() == pwd.getpwuid(os.geteuid()).pw_name
