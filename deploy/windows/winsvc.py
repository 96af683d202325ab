"""What install.ps1, uninstall.ps1 and restart.ps1 decide, as plain functions the tests run on Linux.

The PowerShell scripts do what only Windows can do (register services, set ACLs, stop and start); every
choice they make comes from here: the options remembered between runs, the services and their WinSW
configuration, the log-on account of each, the ACL of the install folder, the pinned WinSW, and the rotation
of WinSW's own log. Standard library only: it runs with whichever Python builds the venv, before the venv
exists. Paths are Windows paths (``ntpath``) whatever the platform running it.

    python winsvc.py plan --in given.json --out plan.json   # install.ps1: options, services, ACL steps
    python winsvc.py forget --options FILE ROLE...          # uninstall.ps1 -Service ROLE: remember it
    python winsvc.py winsw FILE                             # the pinned WinSW, or exit 2 with why
    python winsvc.py rotate [--max-bytes N] [--keep K] FILE...  # WinSW's .wrapper.log, service stopped

A mistake (a bad option, a WinSW that is not the pinned one) exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import ntpath
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

WINSW_VERSION = "2.12.0"
# WinSW-x64.exe of https://github.com/winsw/winsw/releases/tag/v2.12.0. v3 reads another XML format (it
# ignores <argument>: every service would start transcriber.exe with no arguments and restart in a loop).
WINSW_SHA256 = "05B82D46AD331CC16BDC00DE5C6332C1EF818DF8CEEFCD49C726553209B3A0DA"
WINSW_SIZE = 18_243_033
WINSW_URL = f"https://github.com/winsw/winsw/releases/download/v{WINSW_VERSION}/WinSW-x64.exe"

ROLES = ("worker", "beat", "watch", "flower", "metrics")
ADMINISTRATORS = "*S-1-5-32-544"  # BUILTIN\Administrators, by SID: its name differs by Windows language
SYSTEM = "*S-1-5-18"  # NT AUTHORITY\SYSTEM (LocalSystem)
BUILTIN_ACCOUNTS = {  # -ServiceAccount value -> (log-on name, SID for icacls)
    "localsystem": ("LocalSystem", SYSTEM),
    "localservice": (r"NT AUTHORITY\LocalService", "*S-1-5-19"),
    "networkservice": (r"NT AUTHORITY\NetworkService", "*S-1-5-20"),
}
STOP_TIMEOUT_SECONDS = 90  # a warm shutdown: the worker hands its recording back before WinSW kills it
WRAPPER_LOG_MAX_BYTES = 10 * 1024 * 1024
WRAPPER_LOG_KEEP = 4
ACL_VERSION = 1  # install-options.json of an installation whose folder ACL this version set

DEFAULTS: dict[str, Any] = {
    # threads, one model process per core (up to 8): the measured faster layout (README "Choosing the layout").
    # 0 = the worker's own default (runner.default_concurrency), decided on the machine when it starts.
    "WorkerPool": "threads",
    "WorkerConcurrency": 0,
    "NoWorker": False,
    "NoBeat": False,
    "NoWatcher": False,
    "WithFlower": False,
    "FlowerPort": 5555,
    "WithMetrics": False,
    "Wheelhouse": "",
    "ServiceAccount": "LocalSystem",
}


class PlanError(Exception):
    """A mistake in the options or the files given: one line, what is wrong and what to do."""


# ------------------------------------------------------------------ options


def merge_options(previous: dict[str, Any] | None, given: dict[str, Any]) -> dict[str, Any]:
    """This run's options: those given now, else the last run's (``install-options.json``), else the defaults."""
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise PlanError(f"unknown option(s) {', '.join(unknown)}")
    options = dict(DEFAULTS)
    options.update({k: v for k, v in (previous or {}).items() if k in DEFAULTS})
    options.update(given)
    if options["WorkerPool"] not in ("solo", "threads"):
        raise PlanError(f"-WorkerPool {options['WorkerPool']}: use solo or threads")
    concurrency = int(options["WorkerConcurrency"])
    if not 0 <= concurrency <= 64:
        raise PlanError(f"-WorkerConcurrency {concurrency}: use 1 to 64, or 0 for one per core")
    if options["WorkerPool"] == "solo" and concurrency not in (0, 1):
        if "WorkerConcurrency" in given:
            raise PlanError("-WorkerPool solo runs one recording at a time: use -WorkerPool threads with "
                            "-WorkerConcurrency")  # fmt: skip
        concurrency = 1  # a remembered concurrency from a threads run does not apply to solo
    options["WorkerConcurrency"] = 1 if options["WorkerPool"] == "solo" else concurrency
    account_of(str(options["ServiceAccount"]), "worker")  # refuse a malformed account before anything changes
    if all(options[k] for k in ("NoWorker", "NoBeat", "NoWatcher")) and not (
        options["WithFlower"] or options["WithMetrics"]
    ):
        raise PlanError("-NoWorker -NoBeat -NoWatcher leaves no service on this machine: use uninstall.ps1")
    return options


def forget_roles(options: dict[str, Any], roles: list[str]) -> dict[str, Any]:
    """The options after ``uninstall.ps1 -Service ROLE``: the next install does not register it again."""
    flags = {"worker": ("NoWorker", True), "beat": ("NoBeat", True), "watch": ("NoWatcher", True),
             "flower": ("WithFlower", False), "metrics": ("WithMetrics", False)}  # fmt: skip
    changed = dict(options)
    for role in roles:
        if role not in flags:
            raise PlanError(f"unknown service {role}: use one of {', '.join(ROLES)}")
        name, value = flags[role]
        changed[name] = value
    return changed


# ------------------------------------------------------------------ accounts


@dataclass(frozen=True)
class Account:
    """The account one service logs on as."""

    kind: str  # system, builtin, virtual, managed (gMSA), user (a domain or local account with a password)
    name: str  # as the Service Control Manager takes it (Win32_Service.Change StartName)
    grantee: str  # as icacls takes it
    needs_password: bool
    needs_logon_right: bool  # "Log on as a service": virtual and built-in accounts have it already


_ACCOUNT = re.compile(r"^(?P<domain>[^\\/\s\"\[\]:;|=,+*?<>]+)\\(?P<user>[^\\/\"\[\]:;|=,+*?<>@]+)$")
_UPN = re.compile(r"^[^\\/\s\"\[\]:;|=,+*?<>@]+@[A-Za-z0-9.-]+$")


def account_of(spec: str, role: str) -> Account:
    """``-ServiceAccount`` for one service: LocalSystem, LocalService, NetworkService, Virtual (NT SERVICE\\
    transcriber-ROLE, one per service), DOMAIN\\gmsa$ (a group managed service account) or DOMAIN\\user."""
    text = spec.strip()
    key = text.lower()
    if key in ("", "localsystem", r"nt authority\system"):
        return Account("system", "LocalSystem", SYSTEM, False, False)
    if key in BUILTIN_ACCOUNTS or key in (r"nt authority\localservice", r"nt authority\networkservice"):
        name, sid = BUILTIN_ACCOUNTS[key.rsplit("\\", 1)[-1]]
        return Account("builtin", name, sid, False, False)
    if key == "virtual":
        name = rf"NT SERVICE\transcriber-{role}"
        return Account("virtual", name, name, False, False)
    if key.startswith("nt service\\"):
        raise PlanError(
            f"-ServiceAccount {text}: use -ServiceAccount Virtual (each service gets its own NT SERVICE account)"
        )
    if _UPN.match(text):
        raise PlanError(
            f"-ServiceAccount {text}: write it as DOMAIN\\user (the form the Service Control Manager takes)"
        )
    match = _ACCOUNT.match(text)
    if not match:
        raise PlanError(f"-ServiceAccount {text!r} is not an account: use LocalSystem, Virtual, DOMAIN\\user, "
                        "DOMAIN\\gmsa$ or .\\localuser")  # fmt: skip
    if match["user"].endswith("$"):
        return Account("managed", text, text, False, True)
    return Account("user", text, text, True, True)


# ------------------------------------------------------------------ services


@dataclass(frozen=True)
class Layout:
    """Where an installation's files are (Windows paths)."""

    install_dir: str

    def __post_init__(self) -> None:
        if not ntpath.isabs(self.install_dir) or self.install_dir.endswith(("\\", "/")) and len(self.install_dir) > 3:
            raise PlanError(f"-InstallDir {self.install_dir}: give a full path without a trailing backslash")

    def path(self, *parts: str) -> str:
        return ntpath.join(self.install_dir, *parts)

    @property
    def transcriber_exe(self) -> str:
        return self.path("venv", "Scripts", "transcriber.exe")


def services(options: dict[str, Any], layout: Layout, *, metrics_where: str = "127.0.0.1:9808") -> list[dict[str, Any]]:
    """Every service, wanted or not (an unwanted one that is registered is removed), with its command line."""
    worker = ["worker", f"--pool={options['WorkerPool']}"]
    if options["WorkerPool"] == "solo":
        worker_text = "solo pool, one recording at a time"
    elif options["WorkerConcurrency"]:
        worker += [f"--concurrency={options['WorkerConcurrency']}"]
        worker_text = f"threads pool, {options['WorkerConcurrency']} model processes"
    else:
        worker_text = "threads pool, one model process per core"
    schedule = layout.path("data", "celerybeat-schedule")
    plan = [
        ("worker", not options["NoWorker"], worker,
         f"transcriber: Celery worker that transcribes queued recordings ({worker_text})."),
        ("beat", not options["NoBeat"], ["beat", f"--schedule={schedule}"],
         "transcriber: Celery beat, rescues stuck work and dispatches queued recordings. Exactly one per deployment."),
        ("watch", not options["NoWatcher"], ["watch"], "transcriber: registers recordings dropped into WATCH_DIR."),
        ("flower", options["WithFlower"], ["flower", f"--port={options['FlowerPort']}"],
         f"transcriber: Flower monitoring on 127.0.0.1:{options['FlowerPort']}."),
        ("metrics", options["WithMetrics"], ["metrics"],
         f"transcriber: Prometheus metrics on {metrics_where} (METRICS_ADDRESS, METRICS_PORT in .env)."),
    ]  # fmt: skip
    result = []
    for role, wanted, arguments, description in plan:
        account = account_of(str(options["ServiceAccount"]), role)
        result.append({
            "role": role,
            "id": f"transcriber-{role}",
            "wanted": bool(wanted),
            "arguments": arguments,
            "description": description,
            "xml": service_xml(f"transcriber-{role}", description, arguments, layout),
            "account": account.__dict__,
        })  # fmt: skip
    return result


def service_xml(service_id: str, description: str, arguments: list[str], layout: Layout) -> str:
    """The WinSW v2 configuration of one service (WinSW quotes an ``<argument>`` that holds spaces).

    The log-on account is not here: WinSW v2 applies it only when it registers a service, and a password
    would sit in this file. install.ps1 sets it on every run, for every service (``Account``)."""
    lines = [
        f"<!-- Written by deploy\\windows\\install.ps1 for WinSW {WINSW_VERSION}. Re-run install.ps1 instead of "
        "editing: it rewrites this file. -->",
        "<service>",
        f"  <id>{escape(service_id)}</id>",
        f"  <name>{escape(service_id.replace('-', ' '))}</name>",
        f"  <description>{escape(description)}</description>",
        f"  <executable>{escape(layout.transcriber_exe)}</executable>",
        *(f"  <argument>{escape(a)}</argument>" for a in arguments),
        f"  <workingdirectory>{escape(layout.install_dir)}</workingdirectory>",
        f'  <env name="TRANSCRIBER_ENV_FILE" value={quoteattr(layout.path(".env"))}/>',
        '  <env name="PYTHONUNBUFFERED" value="1"/>',
        '  <env name="PYTHONUTF8" value="1"/>',
        "  <startmode>Automatic</startmode>",
        "  <delayedAutoStart>true</delayedAutoStart>",
        '  <onfailure action="restart" delay="10 sec"/>',
        '  <onfailure action="restart" delay="30 sec"/>',
        '  <onfailure action="restart" delay="60 sec"/>',
        "  <resetfailure>1 hour</resetfailure>",
        f"  <!-- Stop: Ctrl+C to the process tree, then up to {STOP_TIMEOUT_SECONDS} s for a warm shutdown before it "
        "is killed.",
        "       The parent first: the worker must hand its recording back before its model process goes. -->",
        f"  <stoptimeout>{STOP_TIMEOUT_SECONDS} sec</stoptimeout>",
        "  <stopparentprocessfirst>true</stopparentprocessfirst>",
        f"  <logpath>{escape(layout.path('logs'))}</logpath>",
        '  <log mode="roll-by-size">',
        "    <sizeThreshold>10240</sizeThreshold>",
        "    <keepFiles>8</keepFiles>",
        "  </log>",
        "</service>",
        "",
    ]
    return "\r\n".join(lines)


# ------------------------------------------------------------------ ACL


def acl_steps(layout: Layout, grantees: list[str], *, data_folders: list[str]) -> list[dict[str, Any]]:
    """The ACL of the install folder, in the order install.ps1 applies them (``icacls`` arguments).

    Code that runs as the services' account must not be changeable by anyone else: the folder is owned by
    Administrators, inherits nothing from the drive (where Authenticated Users may create and change folders),
    and grants full control to Administrators and SYSTEM only; the service account reads and runs it. Its own
    state (data, logs, models) the account may change. ``.env`` (passwords) is readable by them alone. Each
    step ``only`` lists whom the path may grant explicitly: install.ps1 removes any other explicit entry.
    ``data_folders`` (WATCH_DIR, OUTPUT_DIR) inside the install folder get the account's access but keep
    what an administrator added (who may drop recordings, who may read transcripts).
    """
    owned = ["venv", "services", "data", "logs", "models"]
    top = layout.install_dir
    accounts = sorted(set(grantees) - {SYSTEM})
    steps: list[dict[str, Any]] = [
        {"path": top, "icacls": ["/setowner", ADMINISTRATORS, "/C", "/Q"]},
        {"path": top, "icacls": ["/inheritance:r", "/grant:r", f"{ADMINISTRATORS}:(OI)(CI)F", f"{SYSTEM}:(OI)(CI)F",
                                 *(f"{a}:(OI)(CI)RX" for a in accounts), "/Q"],
         "only": [ADMINISTRATORS, SYSTEM, *accounts]},
    ]  # fmt: skip
    for name in owned:
        path = layout.path(name)
        # Whatever was there before (a folder made by someone else, an entry added by hand) goes: it inherits.
        steps.append({"path": path, "icacls": ["/setowner", ADMINISTRATORS, "/T", "/C", "/Q"]})
        steps.append({"path": path, "icacls": ["/reset", "/T", "/C", "/Q"]})
        if name in ("data", "logs", "models") and accounts:
            steps.append({"path": path, "icacls": ["/grant:r", *(f"{a}:(OI)(CI)M" for a in accounts), "/Q"]})
    for folder in data_folders:
        if _inside(folder, top) and accounts:
            steps.append({"path": folder, "icacls": ["/grant:r", *(f"{a}:(OI)(CI)M" for a in accounts), "/Q"]})
    env = layout.path(".env")
    steps += [
        {"path": env, "icacls": ["/setowner", ADMINISTRATORS, "/C", "/Q"]},
        {"path": env, "icacls": ["/inheritance:r", "/grant:r", f"{ADMINISTRATORS}:F", f"{SYSTEM}:R",
                                 *(f"{a}:R" for a in accounts), "/Q"],
         "only": [ADMINISTRATORS, SYSTEM, *accounts]},
    ]  # fmt: skip
    return steps


def _inside(path: str, folder: str) -> bool:
    a, b = ntpath.normcase(ntpath.normpath(path)), ntpath.normcase(ntpath.normpath(folder))
    return a.startswith(b.rstrip("\\") + "\\")


# ------------------------------------------------------------------ the plan install.ps1 follows


def plan(given: dict[str, Any], *, install_dir: str, previous: dict[str, Any] | None,
         data_folders: list[str] | None = None, metrics_where: str = "127.0.0.1:9808") -> dict[str, Any]:  # fmt: skip
    """Everything install.ps1 does differently from one machine to the next, decided in one place."""
    layout = Layout(install_dir)
    options = merge_options(previous, given)
    listed = services(options, layout, metrics_where=metrics_where)
    wanted = [s for s in listed if s["wanted"]]
    grantees = sorted({s["account"]["grantee"] for s in wanted})
    notes = []
    if previous and previous.get("WorkerPool") == "solo" and "WorkerPool" not in given and not options["NoWorker"]:
        notes.append("The worker keeps the solo pool of the last run. -WorkerPool threads runs one model process "
                     "per core, which the benchmarks measured faster (README: Choosing the layout).")  # fmt: skip
    if not options["NoBeat"]:
        notes.append("This machine runs beat. Run exactly one in the deployment: install.ps1 -NoBeat on every "
                     "other machine (transcriber doctor warns when it sees two).")  # fmt: skip
    return {
        "options": options,
        # What install.ps1 writes to install-options.json: AclVersion says the folder's ACL is this version's.
        "save": {**options, "AclVersion": ACL_VERSION},
        # An install folder made before its ACL was set: any user may have changed its venv. Rebuild it.
        "rebuild_venv": not previous or int(previous.get("AclVersion", 0)) < ACL_VERSION,
        "services": listed,
        # Before the venv is built: the folder closed to everyone but Administrators and SYSTEM. After the
        # services are registered (a virtual account exists only then): the accounts' access added.
        "acl_before": acl_steps(layout, [], data_folders=[]),
        "acl": acl_steps(layout, grantees, data_folders=data_folders or []),
        "winsw": {"version": WINSW_VERSION, "url": WINSW_URL, "sha256": WINSW_SHA256},
        "notes": notes,
    }


# ------------------------------------------------------------------ WinSW and its log


def check_winsw(path: Path) -> str:
    """The pinned WinSW, or why not (``PlanError``). A partial download fails the same way."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlanError(f"cannot read {path} ({exc.strerror}): pass -WinSWPath with a copy of WinSW-x64.exe") from exc
    digest = hashlib.sha256(data).hexdigest().upper()
    if digest != WINSW_SHA256:
        raise PlanError(
            f"{path} is not WinSW-x64.exe {WINSW_VERSION} (SHA-256 {digest}, {len(data):,} bytes; expected "
            f"{WINSW_SHA256}, {WINSW_SIZE:,} bytes): download {WINSW_URL} and pass it with -WinSWPath"
        )
    return f"WinSW {WINSW_VERSION} verified (SHA-256 {digest})"


def rotate(path: Path, *, max_bytes: int = WRAPPER_LOG_MAX_BYTES, keep: int = WRAPPER_LOG_KEEP) -> bool:
    """Roll ``path`` to ``path.1`` (``.1`` the newest, up to ``keep``) once it is over ``max_bytes``.

    WinSW 2.x appends to ``<service>.wrapper.log`` for ever; the scripts roll it while the service is stopped."""
    if not path.is_file() or path.stat().st_size <= max_bytes:
        return False
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))
    return True


# ------------------------------------------------------------------ command line


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))  # PowerShell 5.1 may write a BOM


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2), encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="winsvc.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("plan")
    fields = "install_dir, given (the options given now), options_file, data_folders, metrics_where"
    p.add_argument("--in", dest="source", type=Path, required=True, help=f"JSON: {fields}")
    p.add_argument("--out", type=Path, required=True)
    f = commands.add_parser("forget")
    f.add_argument("--options", type=Path, required=True)
    f.add_argument("roles", nargs="+")
    w = commands.add_parser("winsw")
    w.add_argument("file", type=Path)
    r = commands.add_parser("rotate")
    r.add_argument("--max-bytes", type=int, default=WRAPPER_LOG_MAX_BYTES)
    r.add_argument("--keep", type=int, default=WRAPPER_LOG_KEEP)
    r.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "plan":
            request = _read_json(args.source)
            options_file = Path(request["options_file"]) if request.get("options_file") else None
            previous = _read_json(options_file) if options_file and options_file.is_file() else None
            result = plan(request.get("given") or {}, install_dir=request["install_dir"], previous=previous,
                          data_folders=request.get("data_folders"),
                          metrics_where=request.get("metrics_where") or "127.0.0.1:9808")  # fmt: skip
            _write_json(args.out, result)
        elif args.command == "forget":
            if args.options.is_file():
                _write_json(args.options, forget_roles(_read_json(args.options), args.roles))
        elif args.command == "winsw":
            print(check_winsw(args.file))
        else:
            for file in args.files:
                if rotate(file, max_bytes=args.max_bytes, keep=args.keep):
                    print(f"rolled {file}")
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
