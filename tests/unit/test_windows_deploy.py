"""The Windows installer's decisions (deploy/windows/winsvc.py) and its PowerShell, checked on Linux.

No PowerShell runs here: winsvc.py holds every choice install.ps1, uninstall.ps1 and restart.ps1 make (options,
services, accounts, ACL, the pinned WinSW, log rotation) and is tested as it is; the scripts themselves are
parsed (tree-sitter's PowerShell grammar) so that a syntax error, a variable never assigned, a misspelt
cmdlet or a parameter our own function does not take fails here instead of on a customer's server.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest
import tree_sitter
import tree_sitter_powershell

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "windows"
SCRIPTS = sorted(DEPLOY.glob("*.ps1"))


def _load_winsvc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("winsvc", DEPLOY / "winsvc.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["winsvc"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


winsvc = _load_winsvc()
APP = r"C:\app"


def _plan(given: dict | None = None, previous: dict | None = None, **kwargs) -> dict:  # type: ignore[type-arg]
    return winsvc.plan(given or {}, install_dir=kwargs.pop("install_dir", APP), previous=previous, **kwargs)


def _wanted(plan: dict) -> list[str]:  # type: ignore[type-arg]
    return [s["role"] for s in plan["services"] if s["wanted"]]


# ------------------------------------------------------------------ options and services


def test_first_install_runs_worker_beat_and_watcher_on_threads_one_process_per_core() -> None:
    plan = _plan()
    assert _wanted(plan) == ["worker", "beat", "watch"]
    worker = plan["services"][0]
    assert worker["arguments"] == ["worker", "--pool=threads"]  # the worker picks one model process per core
    assert plan["save"]["AclVersion"] == winsvc.ACL_VERSION
    assert any("exactly one" in note for note in plan["notes"])  # the machine that runs beat is told so


def test_a_rerun_keeps_the_last_runs_options_and_an_option_given_now_wins() -> None:
    first = _plan({"NoBeat": True, "NoWatcher": True, "WorkerPool": "threads", "WorkerConcurrency": 3})
    again = _plan({}, previous=first["save"])
    assert _wanted(again) == ["worker"]
    assert again["services"][0]["arguments"] == ["worker", "--pool=threads", "--concurrency=3"]
    assert again["rebuild_venv"] is False  # this version set the folder's ACL: the venv is trusted
    back = _plan({"NoBeat": False}, previous=first["save"])
    assert _wanted(back) == ["worker", "beat"]


def test_an_install_made_before_the_acl_rebuilds_its_venv_and_keeps_its_solo_pool_with_a_note() -> None:
    old = {"WorkerPool": "solo", "WorkerConcurrency": 1, "NoBeat": False, "NoWatcher": False, "WithFlower": False,
           "FlowerPort": 5555, "WithMetrics": False, "Wheelhouse": ""}  # fmt: skip  # what the last version wrote
    plan = _plan({}, previous=old)
    assert plan["rebuild_venv"] is True
    assert plan["services"][0]["arguments"] == ["worker", "--pool=solo"]
    assert any("solo" in note and "-WorkerPool threads" in note for note in plan["notes"])


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"WorkerPool": "solo", "WorkerConcurrency": 2}, "solo runs one recording at a time"),
        ({"WorkerPool": "prefork"}, "use solo or threads"),
        ({"WorkerConcurrency": 65}, "1 to 64"),
        ({"NoWorker": True, "NoBeat": True, "NoWatcher": True}, "no service on this machine"),
        ({"ServiceAccount": "svc transcriber"}, "is not an account"),
        ({"Colour": "blue"}, "unknown option"),
    ],
)
def test_a_bad_option_is_refused_in_one_line_before_anything_changes(given: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(winsvc.PlanError, match=message):
        _plan(given)


def test_solo_remembered_with_a_threads_concurrency_runs_one_at_a_time() -> None:
    plan = _plan({"WorkerPool": "solo"}, previous={"WorkerPool": "threads", "WorkerConcurrency": 4})
    assert plan["options"]["WorkerConcurrency"] == 1
    assert plan["services"][0]["arguments"] == ["worker", "--pool=solo"]


def test_uninstalling_beat_is_remembered_so_the_next_upgrade_does_not_bring_a_second_beat_back() -> None:
    installed = _plan({})["save"]
    after_uninstall = winsvc.forget_roles(installed, ["beat"])
    upgrade = _plan({}, previous=after_uninstall)
    assert "beat" not in _wanted(upgrade)
    assert _wanted(_plan({"NoBeat": False}, previous=after_uninstall)) == ["worker", "beat", "watch"]
    flower = winsvc.forget_roles(_plan({"WithFlower": True})["save"], ["flower", "worker"])
    assert flower["WithFlower"] is False and flower["NoWorker"] is True
    with pytest.raises(winsvc.PlanError, match="unknown service"):
        winsvc.forget_roles(installed, ["all"])


def test_forget_on_the_command_line_edits_the_options_file(tmp_path: Path) -> None:
    options = tmp_path / "install-options.json"
    options.write_text("\ufeff" + json.dumps(_plan({"WithMetrics": True})["save"]), encoding="utf-8")  # 5.1's BOM
    assert winsvc.main(["forget", "--options", str(options), "metrics", "watch"]) == 0
    saved = json.loads(options.read_text(encoding="utf-8"))
    assert saved["WithMetrics"] is False and saved["NoWatcher"] is True


# ------------------------------------------------------------------ accounts


@pytest.mark.parametrize(
    ("spec", "kind", "name", "grantee", "password"),
    [
        ("LocalSystem", "system", "LocalSystem", "*S-1-5-18", False),
        ("", "system", "LocalSystem", "*S-1-5-18", False),
        ("NetworkService", "builtin", r"NT AUTHORITY\NetworkService", "*S-1-5-20", False),
        ("virtual", "virtual", r"NT SERVICE\transcriber-beat", r"NT SERVICE\transcriber-beat", False),
        (r"CORP\gmsa-transcriber$", "managed", r"CORP\gmsa-transcriber$", r"CORP\gmsa-transcriber$", False),
        (r"CORP\svc-transcriber", "user", r"CORP\svc-transcriber", r"CORP\svc-transcriber", True),
        (r".\transcriber", "user", r".\transcriber", r".\transcriber", True),
    ],
)
def test_service_accounts(spec: str, kind: str, name: str, grantee: str, password: bool) -> None:
    account = winsvc.account_of(spec, "beat")
    assert (account.kind, account.name, account.grantee, account.needs_password) == (kind, name, grantee, password)
    assert account.needs_logon_right == (kind in ("managed", "user"))


@pytest.mark.parametrize("spec", [r"NT SERVICE\transcriber-worker", "svc@corp.example", r"CORP\a\b", "CORP\\"])
def test_an_account_in_a_form_windows_would_not_take_is_refused_with_what_to_write(spec: str) -> None:
    with pytest.raises(winsvc.PlanError, match="ServiceAccount"):
        winsvc.account_of(spec, "worker")


def test_the_account_reaches_every_service_including_one_added_on_a_later_run() -> None:
    first = _plan({"ServiceAccount": r"CORP\gmsa-transcriber$"})
    later = _plan({"WithMetrics": True}, previous=first["save"])
    accounts = {s["role"]: s["account"]["name"] for s in later["services"] if s["wanted"]}
    assert accounts == dict.fromkeys(["worker", "beat", "watch", "metrics"], r"CORP\gmsa-transcriber$")
    virtual = _plan({"ServiceAccount": "Virtual", "WithFlower": True})
    assert {s["account"]["name"] for s in virtual["services"] if s["wanted"]} == {
        rf"NT SERVICE\transcriber-{role}" for role in ("worker", "beat", "watch", "flower")
    }


# ------------------------------------------------------------------ WinSW configuration


def test_service_xml_is_winsw_v2_with_the_command_line_environment_and_warm_stop() -> None:
    install_dir = r"C:\Program Files\Call & Co\transcriber"
    service = _plan({}, install_dir=install_dir)["services"][1]  # beat: its argument holds a path with spaces
    xml = ET.fromstring(service["xml"])
    assert xml.findtext("id") == "transcriber-beat"
    assert xml.findtext("executable") == install_dir + r"\venv\Scripts\transcriber.exe"
    assert [a.text for a in xml.findall("argument")] == ["beat", rf"--schedule={install_dir}\data\celerybeat-schedule"]
    assert {e.get("name"): e.get("value") for e in xml.findall("env")}["TRANSCRIBER_ENV_FILE"] == install_dir + r"\.env"
    assert xml.findtext("workingdirectory") == install_dir
    assert xml.findtext("stoptimeout") == "90 sec" and xml.findtext("stopparentprocessfirst") == "true"
    assert xml.find("serviceaccount") is None  # no password in a file: install.ps1 sets the account itself
    assert xml.find("arguments") is None  # WinSW v2 would take <arguments> as one string: one <argument> each


def test_install_dir_must_be_a_full_path() -> None:
    with pytest.raises(winsvc.PlanError, match="full path"):
        _plan({}, install_dir=r"app\transcriber")


# ------------------------------------------------------------------ ACL


def _steps_for(steps: list[dict], path: str) -> list[list[str]]:  # type: ignore[type-arg]
    return [s["icacls"] for s in steps if s["path"] == path]


def test_the_install_folder_is_closed_to_all_but_administrators_system_and_the_services_account() -> None:
    plan = _plan({"ServiceAccount": r"CORP\svc-transcriber"}, data_folders=[r"C:\app\inbox", r"\\nas\calls"])
    acl = plan["acl"]
    top = _steps_for(acl, APP)
    assert ["/setowner", "*S-1-5-32-544", "/C", "/Q"] in top  # a folder made by someone else changes owner
    grant = next(s for s in acl if s["path"] == APP and "only" in s)
    assert grant["icacls"][:2] == ["/inheritance:r", "/grant:r"]  # nothing inherited from C:\ (Users may write)
    assert set(grant["icacls"][2:-1]) == {"*S-1-5-32-544:(OI)(CI)F", "*S-1-5-18:(OI)(CI)F",
                                          r"CORP\svc-transcriber:(OI)(CI)RX"}  # fmt: skip
    assert grant["only"] == ["*S-1-5-32-544", "*S-1-5-18", r"CORP\svc-transcriber"]
    for owned in ("venv", "services"):  # code: reset to inherit, so what anyone added by hand goes
        assert ["/reset", "/T", "/C", "/Q"] in _steps_for(acl, rf"{APP}\{owned}")
        assert not any("/grant:r" in s for s in _steps_for(acl, rf"{APP}\{owned}"))
    for state in ("data", "logs", "models"):
        assert ["/grant:r", r"CORP\svc-transcriber:(OI)(CI)M", "/Q"] in _steps_for(acl, rf"{APP}\{state}")
    assert ["/grant:r", r"CORP\svc-transcriber:(OI)(CI)M", "/Q"] in _steps_for(acl, rf"{APP}\inbox")
    assert _steps_for(acl, r"\\nas\calls") == []  # not ours: the operator grants it, doctor --as-service checks
    env = next(s for s in acl if s["path"] == rf"{APP}\.env" and "only" in s)
    assert env["icacls"] == ["/inheritance:r", "/grant:r", "*S-1-5-32-544:F", "*S-1-5-18:R",
                             r"CORP\svc-transcriber:R", "/Q"]  # fmt: skip
    assert env["only"] == grant["only"]  # an .env copied in with an open ACL is fixed on every run


def test_before_the_venv_is_built_only_administrators_and_system_have_access() -> None:
    steps = _plan({"ServiceAccount": "Virtual"})["acl_before"]
    granted = " ".join(" ".join(s["icacls"]) for s in steps)
    assert "NT SERVICE" not in granted  # a virtual account exists only once its service is registered
    assert next(s for s in steps if s["path"] == APP and "only" in s)["only"] == ["*S-1-5-32-544", "*S-1-5-18"]


def test_virtual_accounts_each_get_access_and_localsystem_needs_no_grant_of_its_own() -> None:
    virtual = _plan({"ServiceAccount": "Virtual", "NoWatcher": True})["acl"]
    data = _steps_for(virtual, rf"{APP}\data")[-1]
    assert data == ["/grant:r", r"NT SERVICE\transcriber-beat:(OI)(CI)M", r"NT SERVICE\transcriber-worker:(OI)(CI)M",
                    "/Q"]  # fmt: skip
    system = _plan({})["acl"]
    assert not any("/grant:r" in s for s in _steps_for(system, rf"{APP}\data"))
    assert next(s for s in system if s["path"] == rf"{APP}\.env" and "only" in s)["icacls"][2:4] == [
        "*S-1-5-32-544:F", "*S-1-5-18:R"]  # fmt: skip


# ------------------------------------------------------------------ WinSW and its log


def test_winsw_is_refused_unless_it_is_the_pinned_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "WinSW-x64.exe"
    fake.write_bytes(b"MZ not really WinSW 3")
    assert winsvc.main(["winsw", str(fake)]) == 2
    with pytest.raises(winsvc.PlanError, match=r"is not WinSW-x64.exe 2\.12\.0 .*expected 05B82D46.*-WinSWPath"):
        winsvc.check_winsw(fake)
    with pytest.raises(winsvc.PlanError, match="cannot read"):
        winsvc.check_winsw(tmp_path / "missing.exe")
    monkeypatch.setattr(winsvc, "WINSW_SHA256", hashlib.sha256(fake.read_bytes()).hexdigest().upper())
    assert winsvc.check_winsw(fake).startswith("WinSW 2.12.0 verified")


def test_the_pinned_hash_is_the_one_the_docs_give() -> None:
    assert re.fullmatch(r"[0-9A-F]{64}", winsvc.WINSW_SHA256)
    assert winsvc.WINSW_SHA256 in (ROOT / "docs" / "windows.md").read_text(encoding="utf-8")


def test_the_wrapper_log_rolls_when_it_is_too_big_and_keeps_a_few(tmp_path: Path) -> None:
    log = tmp_path / "transcriber-worker.wrapper.log"
    for n in range(6):
        log.write_text(f"run {n}\n" * 20, encoding="utf-8")
        assert winsvc.rotate(log, max_bytes=100, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{log.name}.{n}" for n in (1, 2, 3)]
    assert (tmp_path / f"{log.name}.1").read_text(encoding="utf-8").startswith("run 5")
    log.write_text("small\n", encoding="utf-8")
    assert not winsvc.rotate(log, max_bytes=100, keep=3)
    assert winsvc.main(["rotate", "--max-bytes", "1", str(log)]) == 0 and not log.exists()


def test_plan_on_the_command_line_reads_and_writes_json_as_install_ps1_does(tmp_path: Path) -> None:
    options = tmp_path / "install-options.json"
    options.write_text(json.dumps({"NoBeat": True, "AclVersion": 1}), encoding="utf-8")
    request = tmp_path / "in.json"
    request.write_text(json.dumps({"install_dir": r"D:\Transcriber", "given": {"WithFlower": True},
                                   "options_file": str(options), "data_folders": []}), encoding="utf-8")  # fmt: skip
    out = tmp_path / "out.json"
    assert winsvc.main(["plan", "--in", str(request), "--out", str(out)]) == 0
    plan = json.loads(out.read_text(encoding="utf-8"))
    assert _wanted(plan) == ["worker", "watch", "flower"] and plan["rebuild_venv"] is False
    request.write_text(json.dumps({"install_dir": APP, "given": {"WorkerPool": "fibers"}}), encoding="utf-8")
    assert winsvc.main(["plan", "--in", str(request), "--out", str(out)]) == 2


# ------------------------------------------------------------------ the PowerShell itself

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
AUTOMATIC = {"_", "true", "false", "null", "psscriptroot", "psboundparameters", "erroractionpreference",
             "progresspreference", "whatifpreference", "lastexitcode", "matches", "executioncontext", "pscmdlet",
             "pid", "args", "input", "psitem", "host", "home"}  # fmt: skip
# Cmdlets of Windows PowerShell 5.1 the scripts use. A new one goes here after checking it exists there.
CMDLETS = {"add-type", "convertfrom-json", "convertto-json", "copy-item", "foreach-object", "format-table",
           "get-acl", "get-ciminstance", "get-command", "get-content", "get-credential", "get-item", "get-service",
           "invoke-cimmethod", "invoke-webrequest", "join-path", "move-item", "new-item", "new-object", "out-host",
           "out-string", "pop-location", "push-location", "remove-item", "select-object", "select-string",
           "set-strictmode", "split-path", "start-service", "start-sleep", "stop-service", "test-path",
           "unblock-file", "where-object", "write-host", "write-warning", "get-childitem"}  # fmt: skip


def _nodes(node, kind: str):  # type: ignore[no-untyped-def]
    if node.type == kind:
        yield node
    for child in node.children:
        yield from _nodes(child, kind)


def _all(node):  # type: ignore[no-untyped-def]
    yield node
    for child in node.children:
        yield from _all(child)


def _name(variable: str) -> str | None:
    text = variable.lstrip("$@").strip("{}").lower()
    scope, _, rest = text.partition(":")
    if rest:
        return rest if scope in ("script", "global", "local") else None  # $env:X and drives are not ours
    return text


def _check_script(source: bytes) -> list[str]:
    """What would break at run time under Set-StrictMode, found without PowerShell."""
    tree = PARSER.parse(source)
    problems = [f"syntax error at line {n.start_point[0] + 1}" for n in _nodes(tree.root_node, "ERROR")]
    problems += [f"missing {n.type!r} at line {n.start_point[0] + 1}" for n in _all(tree.root_node) if n.is_missing]
    assigned = set(AUTOMATIC)
    targets = [v for node in _nodes(tree.root_node, "left_assignment_expression") for v in _nodes(node, "variable")]
    for kind in ("script_parameter", "foreach_statement"):  # their own variable, not one in an attribute
        targets += [c for node in _nodes(tree.root_node, kind) for c in node.children if c.type == "variable"]
    assigned |= {name for v in targets if (name := _name(v.text.decode()))}
    for node in _nodes(tree.root_node, "variable"):
        name = _name(node.text.decode())
        if name and name not in assigned:
            problems.append(f"${name} is used at line {node.start_point[0] + 1} but never assigned")
    functions: dict[str, set[str]] = {}
    for node in _nodes(tree.root_node, "function_statement"):
        name = next(_nodes(node, "function_name")).text.decode().lower()
        functions[name] = {
            _name(c.text.decode()) or ""
            for p in _nodes(node, "script_parameter")
            for c in p.children
            if c.type == "variable"
        }
    for command in _nodes(tree.root_node, "command"):
        name_node = next(_nodes(command, "command_name"), None)
        if name_node is None:
            continue
        name = name_node.text.decode().lower()
        line = command.start_point[0] + 1
        if name in functions:
            for parameter in _nodes(command, "command_parameter"):
                given = parameter.text.decode().lstrip("-").rstrip(":").lower()
                owner = parameter.parent.parent if parameter.parent is not None else None
                if owner is not None and owner.id == command.id and given not in functions[name]:
                    problems.append(f"{name} has no parameter -{given} (line {line})")
        elif "-" in name and not name.endswith((".exe", ".ps1")) and name not in CMDLETS:
            problems.append(f"{name} at line {line} is neither a function of the script nor a known cmdlet")
    return problems


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_powershell_parses_and_every_name_it_uses_exists(script: Path) -> None:
    assert _check_script(script.read_bytes()) == []


@pytest.mark.parametrize(
    ("broken", "found"),
    [
        (b"function F { if ($a -eq 1) { Write-Host 'x' }\n", "missing '}' at line 1"),
        (b'$a = @{ x = 1\nWrite-Host "b\n', "syntax error"),
        (b"$plan = 1\nWrite-Host $plna\n", "$plna is used"),
        (b"Get-CimInstances -ClassName Win32_Service\n", "get-ciminstances at line 1"),
        (b"function F([string]$Name) { $Name }\nF -Nmae 'x'\n", "f has no parameter -nmae"),
    ],
)
def test_the_powershell_check_finds_each_kind_of_mistake(broken: bytes, found: str) -> None:
    assert any(found in problem for problem in _check_script(broken)), _check_script(broken)


def test_install_ps1_passes_winsvc_exactly_the_options_it_knows() -> None:
    text = (DEPLOY / "install.ps1").read_text(encoding="utf-8")
    listed = re.search(r"foreach \(\$name in @\(([^)]*)\)\) \{\s*if \(-not \$PSBoundParameters", text)
    assert listed, "install.ps1's loop over the options given is not where this test looks"
    names = re.findall(r"'(\w+)'", listed.group(1))
    assert sorted(names) == sorted(winsvc.DEFAULTS)
    params = {m.lower() for m in re.findall(r"\]\$(\w+)", text.split("Set-StrictMode")[0])}
    assert {n.lower() for n in names} <= params
