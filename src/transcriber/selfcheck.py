"""Folder checks as the services' own account, and ``transcriber doctor --as-service``.

An operator runs ``doctor`` as an administrator, who may read a share that the services'
account (LocalSystem, ``NT SERVICE\\transcriber-worker``, a Linux ``transcriber`` user) cannot:
doctor says OK while every recording fails. So each service process checks, at its start and
as itself, the folders its role uses; logs each failing check as one ERROR line; and writes
``DATA_DIR/service-checks/<role>-<host>.json``, which ``doctor --as-service`` reads. A failing
check never stops a service: a restart loop helps nobody, the log line and doctor tell.

The checks do what the service will do (list a folder, write a file through the same atomic
writer as the transcripts), never ``os.access``: on Windows that ignores ACLs and looks only at
the read-only attribute, so it says yes to a folder the account cannot open.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transcriber.doctor import FAIL, OK, WARN, Check
from transcriber.settings import Settings

log = logging.getLogger(__name__)

REPORTS_FOLDER = "service-checks"
# The roles every deployment runs somewhere; metrics and flower are optional and only shown when they report.
EXPECTED_ROLES = ("worker", "beat", "watcher")


def account_name() -> str:
    """The OS account this process runs as: ``transcriber`` on POSIX, ``NT SERVICE\\transcriber-worker`` on Windows."""
    if sys.platform == "win32":
        try:
            import ctypes

            buffer = ctypes.create_unicode_buffer(1024)
            size = ctypes.c_ulong(len(buffer))
            if ctypes.windll.secur32.GetUserNameExW(2, buffer, ctypes.byref(size)):  # 2: NameSamCompatible
                return buffer.value
        except (AttributeError, OSError):  # no secur32 (or not Windows after all): the environment's word
            pass
        domain, user = os.environ.get("USERDOMAIN", ""), os.environ.get("USERNAME", "")
        return f"{domain}\\{user}" if domain and user else user or "unknown"
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return f"uid {os.geteuid()}"


def check_folder(name: str, path: Path, *, write: bool, account: str) -> Check:
    """Whether this process can list ``path`` and, with ``write``, write a file there as the worker writes
    transcripts (a temp file renamed into place), then delete it. ``path`` is used as given: a UNC path
    (``\\\\server\\share\\inbox``) stays one."""
    from transcriber.outputs import write_atomic

    doing = "list"
    try:
        if write:
            doing = "create"
            path.mkdir(parents=True, exist_ok=True)
            doing = "write a file in"
            probe = path / f".transcriber-check-{os.getpid()}"
            write_atomic(probe, "")
            doing = "delete a file in"
            probe.unlink()
            doing = "list"
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if isinstance(exc, FileNotFoundError) and not write:
            fix = f"create it, or point {name} at the folder"
        elif isinstance(exc, NotADirectoryError):
            fix = f"point {name} at a folder"
        else:
            fix = f"give {account} {'modify' if write else 'read'} rights on it (a share: on the share and the folder)"
        return Check(name, FAIL, f"{path}: cannot {doing} it as {account} ({why}): {fix}")
    return Check(name, OK, f"{path} {'writable' if write else 'listed'} as {account}")


def folder_needs(settings: Settings, role: str) -> list[tuple[str, Path, bool]]:
    """The folders a role uses: (setting, path, needs writing). ``doctor`` checks them all as its own user."""
    watch = ("WATCH_DIR", Path(settings.watch_dir), False)  # read only: nothing writes or moves files there
    output = [("OUTPUT_DIR", Path(settings.output_dir), True)] if settings.formats or role == "doctor" else []
    data = ("DATA_DIR", settings.data_dir, True)  # this report; SQLite, the folder broker and beat's schedule
    # Models are joined and downloaded into WHISPER_MODEL_DIR; unset, into the account's own profile.
    models = [("WHISPER_MODEL_DIR", settings.whisper_model_dir, True)] if settings.whisper_model_dir else []
    if role == "worker":
        return [watch, *output, data, *models]
    if role == "watcher":
        return [watch, data]
    if role == "doctor":
        return [watch, *output, data]
    return [data]  # beat, metrics, flower


def folder_checks(settings: Settings, role: str, account: str) -> list[Check]:
    return [
        check_folder(name, path, write=write, account=account) for name, path, write in folder_needs(settings, role)
    ]


def report(settings: Settings, *, role: str, now: datetime | None = None) -> Path | None:
    """At a service's start: check its folders as its own account, log each failure, write the report.

    Never raises: a service starts whatever this finds. Returns the report's path, or ``None`` if it
    could not be written (which is logged too).
    """
    try:
        return _report(settings, role, now or datetime.now(UTC))
    except Exception:  # a bug here must not keep a service from starting
        log.exception("the %s's folder self-check failed", role)
        return None


def _report(settings: Settings, role: str, now: datetime) -> Path | None:
    account = account_name()
    needs = folder_needs(settings, role)
    checks = [check_folder(name, path, write=write, account=account) for name, path, write in needs]
    for check in checks:
        if check.status == FAIL:
            log.error("%s %s: %s", role, check.name, check.detail)
    host = socket.gethostname()
    data = {
        "role": role,
        "host": host,
        "pid": os.getpid(),
        "account": account,
        "checked_at": now.isoformat(),
        "checks": [{**asdict(c), "path": str(p)} for c, (_, p, _) in zip(checks, needs, strict=True)],
    }
    target = settings.data_dir / REPORTS_FOLDER / f"{role}-{_safe(host)}.json"
    from transcriber.outputs import write_atomic

    try:
        write_atomic(target, json.dumps(data, indent=2))
    except OSError as exc:
        log.error("%s: cannot write %s as %s (%s): give %s modify rights on DATA_DIR; until then "
                  "'transcriber doctor --as-service' cannot show this service's checks",
                  role, target, account, exc.strerror or exc, account)  # fmt: skip
        return None
    failed = sum(c.status == FAIL for c in checks)
    log.info("%s folder checks as %s: %s (%s)", role, account, f"{failed} failed" if failed else "all passed", target)
    return target


def _safe(host: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in host) or "host"


# ---------------------------------------------------------------- doctor --as-service


@dataclass(frozen=True)
class Finding:
    """One line of ``doctor --as-service``: a service's check (or a missing or unreadable report)."""

    role: str
    name: str
    status: str
    detail: str
    host: str | None = None
    pid: int | None = None
    account: str | None = None
    checked_at: str | None = None
    age_seconds: float | None = None
    file: str | None = None


def read_reports(folder: Path, *, host: str | None = None) -> list[dict[str, Any]]:
    """Every report in ``folder`` (of one ``host`` only, if given); one that cannot be read has ``error``."""
    try:
        files = sorted(folder.glob("*.json"))
    except OSError:
        return []
    reports = []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
                raise ValueError("not a service report")
        except (OSError, ValueError) as exc:
            reports.append({"file": str(file), "error": str(exc) or type(exc).__name__})
            continue
        if host is None or data.get("host") == host:
            reports.append({**data, "file": str(file)})
    return reports


def findings(
    reports: list[dict[str, Any]], *, now: datetime, paths: dict[str, str], expected: tuple[str, ...] = EXPECTED_ROLES
) -> list[Finding]:
    """Pure: the verdict on the reports. A failing check fails; a check of a folder whose setting has changed
    since (``paths``: setting -> path now) warns, stale; an ``expected`` role without a report warns."""
    found: list[Finding] = []
    for data in reports:
        if "error" in data:
            found.append(Finding("?", "report", WARN, f"{data['file']} cannot be read ({data['error']}): delete "
                                 "it; the service writes it again when it starts", file=data["file"]))  # fmt: skip
            continue
        role = str(data.get("role", "?"))
        checked_at = str(data.get("checked_at", ""))
        try:
            age: float | None = (now - datetime.fromisoformat(checked_at)).total_seconds()
        except (TypeError, ValueError):
            age = None
        about = {"host": data.get("host"), "pid": data.get("pid"), "account": data.get("account"),
                 "checked_at": checked_at, "age_seconds": age, "file": data["file"]}  # fmt: skip
        for check in data["checks"]:
            name, status, detail = str(check.get("name")), str(check.get("status")), str(check.get("detail"))
            then, current = check.get("path"), paths.get(name)
            if then is not None and current is not None and then != current:
                status, detail = WARN, (f"checked {then}, but {name} is {current} now: restart the {role} on "
                                        f"{about['host']} so it checks again")  # fmt: skip
            found.append(Finding(role, name, status, detail, **about))
    reported = {f.role for f in found}
    for role in expected:
        if role not in reported:
            found.append(Finding(role, "report", WARN, f"no report from the {role}: it has not started since this "
                                 "version, or cannot write DATA_DIR; see its log (on another machine with a DATA_DIR "
                                 "of its own: run doctor --as-service there)"))  # fmt: skip
    return found


def check_services(settings: Settings, *, now: datetime, this_host: bool = False) -> list[Finding]:
    """``doctor --as-service``: the reports in DATA_DIR (of every host, or of this one) and their verdict."""
    reports = read_reports(settings.data_dir / REPORTS_FOLDER, host=socket.gethostname() if this_host else None)
    paths = {name: str(path) for name, path, _ in folder_needs(settings, "worker")}
    return findings(reports, now=now, paths=paths)


def format_findings(found: list[Finding]) -> str:
    """The text of ``doctor --as-service``: each service's checks under a line saying who ran them, and when."""
    lines: list[str] = []
    last: tuple[Any, ...] | None = None
    for f in found:
        if f.file is None or f.checked_at is None:  # a missing or unreadable report: a line of its own
            lines.append(f"{f.status.upper():<5} {f.role:<17} {f.detail}")
            last = None
            continue
        service = (f.role, f.host, f.pid, f.file)
        if service != last:
            age = "age unknown" if f.age_seconds is None else f"{_ago(f.age_seconds)} ago"
            lines.append(f"{f.role} on {f.host} (pid {f.pid}), checked as {f.account} {age} [{f.file}]:")
            last = service
        lines.append(f"  {f.status.upper():<5} {f.name:<17} {f.detail}")
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"
