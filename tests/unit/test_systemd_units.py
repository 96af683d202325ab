"""deploy/linux: the systemd units as install.sh installs them, and install.sh itself.

install.sh runs with ``--root`` into a folder of the test's own: it writes the settings file, the folders and
the units there and enables units with ``systemctl --root``, and needs no user, no pip and no running systemd.
``--prefix`` is the virtualenv running these tests, so each unit's ExecStart names a real executable and
``systemd-analyze verify`` can check it. What the worker unit's stop does to a running call, for real:
tests/integration/test_systemd_stop.py.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from transcriber.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "linux"
INSTALL = DEPLOY / "install.sh"
PREFIX = Path(sys.executable).parent.parent  # the virtualenv running the tests: bin/transcriber exists
SERVICES = (
    "transcriber-worker@.service",
    "transcriber-beat.service",
    "transcriber-watch.service",
    "transcriber-flower.service",
    "transcriber-metrics.service",
)
UNITS = ("transcriber.target", *SERVICES)
ENV_FILE = "/etc/transcriber/transcriber.env"
UNIT_DIR = Path("etc/systemd/system")
DATA_DIR, WATCH_DIR, OUTPUT_DIR = "/var/lib/transcriber", "/srv/transcriber/inbox", "/srv/transcriber/transcripts"
# What each unit may write (ReadWritePaths=): every one DATA_DIR (SQLite and the folder broker of the embedded
# default, beat's schedule, the library caches); the worker OUTPUT_DIR too. WATCH_DIR is only read.
WRITES = {name: {DATA_DIR} for name in SERVICES} | {"transcriber-worker@.service": {DATA_DIR, OUTPUT_DIR}}
COMMANDS = {
    "transcriber-worker@.service": "worker",
    "transcriber-beat.service": "beat",
    "transcriber-watch.service": "watch",
    "transcriber-flower.service": "flower",
    "transcriber-metrics.service": "metrics",
}


def install(root: Path, *args: str, prefix: Path = PREFIX, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``install.sh --root ROOT --prefix PREFIX ARGS``; with ``ok`` it must succeed."""
    done = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--prefix", str(prefix), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def configure(root: Path, **settings: str) -> None:
    """What an operator does after the first run: a real DATABASE_URL (and any other line) in the settings file."""
    path = root / ENV_FILE.lstrip("/")
    lines = path.read_text().replace("CHANGE_ME", "s3cret").splitlines()
    for key, value in settings.items():
        lines = [line for line in lines if not line.startswith(f"{key}=")] + [f"{key}={value}"]
    path.write_text("\n".join(lines) + "\n")


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as systemd reads it: section -> setting -> values (a setting given twice keeps both)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (stripped.strip() for stripped in path.read_text().splitlines()):
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}= is given {len(values)} times: {values}"
    return values[0]


def environment(unit: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    """The variables of all ``Environment=`` lines (systemd's quoting is shell-like for these values)."""
    pairs = [word.split("=", 1) for line in unit["Service"].get("Environment", []) for word in shlex.split(line)]
    return {key: value for key, value in pairs}


def seconds(value: str) -> float:
    """A systemd time span of the forms these units use: 90, 90s, 2min."""
    for suffix, factor in (("min", 60), ("s", 1)):
        if value.endswith(suffix):
            return float(value.removesuffix(suffix)) * factor
    return float(value)


def verify(*paths: Path) -> str:
    """What ``systemd-analyze verify`` finds wrong with the unit files: empty when nothing.

    It exits 0 after an unknown setting or a value it cannot parse (it ignores that line and says so on stderr),
    so anything it prints counts as a finding, as does a non-zero exit code.
    """
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is not installed: install systemd (apt-get install systemd); scripts/test does")
    done = subprocess.run(
        [tool, "verify", "--man=no", "--generators=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    found = (done.stdout + done.stderr).strip()
    return found or ("" if done.returncode == 0 else f"systemd-analyze verify exited {done.returncode}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root that install.sh was run into twice: as a first install, and again once DATABASE_URL was set."""
    root = tmp_path_factory.mktemp("root")
    install(root)
    configure(root)
    install(root, "--with-flower", "--with-metrics")
    return root


@pytest.fixture
def units(installed: Path) -> dict[str, dict[str, dict[str, list[str]]]]:
    return {name: read_unit(installed / UNIT_DIR / name) for name in UNITS}


# ---------------------------------------------------------------- systemd's own check


@pytest.mark.parametrize("name", UNITS)
def test_systemd_finds_nothing_wrong_with_the_installed_unit(installed: Path, name: str) -> None:
    assert verify(installed / UNIT_DIR / name) == ""


@pytest.mark.parametrize(
    ("line", "broken", "said"),
    [
        ("Restart=on-failure", "Restrt=on-failure", "Restrt"),  # a typo'd setting: systemd ignores the line
        ("KillMode=mixed", "KillMode=mixd", "mixd"),  # a value it cannot parse: ignored too
        ("TimeoutStopSec=90", "TimeoutStopSec=90x", "90x"),
        (f"ExecStart={PREFIX}/bin/transcriber", "ExecStart=/nowhere/bin/transcriber", "/nowhere/bin/transcriber"),
    ],
)
def test_the_check_finds_a_broken_unit(installed: Path, tmp_path: Path, line: str, broken: str, said: str) -> None:
    """The test above can fail: each of these mistakes in the worker's unit is found, and named."""
    for name in UNITS:
        shutil.copy(installed / UNIT_DIR / name, tmp_path / name)
    worker = tmp_path / "transcriber-worker@.service"
    text = worker.read_text()
    assert line in text
    worker.write_text(text.replace(line, broken, 1))
    assert said in verify(worker)


# ---------------------------------------------------------------- what each unit promises


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_restarts_on_failure_but_not_on_a_bad_setting(units: dict, name: str) -> None:
    unit = units[name]
    assert one(unit, "Service", "Restart") == "on-failure"
    assert seconds(one(unit, "Service", "RestartSec")) >= 5
    # transcriber exits 2 on a configuration error (cli.main): restarting repeats it, so it is not restarted.
    assert one(unit, "Service", "RestartPreventExitStatus") == "2"
    # Anything else that keeps failing is given up on instead of restarted forever.
    assert int(one(unit, "Unit", "StartLimitBurst")) * seconds(one(unit, "Service", "RestartSec")) < seconds(
        one(unit, "Unit", "StartLimitIntervalSec")
    )


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_its_command_as_the_service_user_with_the_settings_file(units: dict, name: str) -> None:
    unit = units[name]
    assert (one(unit, "Service", "User"), one(unit, "Service", "Group")) == ("transcriber", "transcriber")
    command = shlex.split(one(unit, "Service", "ExecStart"))
    assert command[:2] == [f"{PREFIX}/bin/transcriber", COMMANDS[name]]
    variables = environment(unit)
    assert variables["TRANSCRIBER_ENV_FILE"] == ENV_FILE
    assert "EnvironmentFile" not in unit["Service"]  # one mechanism: transcriber's own reading of the file
    # A setting in the unit would silently win over the settings file, and a secret there is shown by systemctl.
    settings = {field.upper() for field in Settings.model_fields}
    assert not settings & set(variables)
    assert not [word for word in command if word.lstrip("-").split("=")[0].upper() in settings]
    # Library caches and the default model folder land where the unit may write.
    assert variables["HOME"] == DATA_DIR == one(unit, "Service", "WorkingDirectory")
    assert variables["XDG_CACHE_HOME"].startswith(DATA_DIR + "/")
    assert "transcriber.target" in unit["Unit"]["PartOf"] and unit["Install"]["WantedBy"] == ["transcriber.target"]


def test_a_worker_stop_hands_the_running_calls_back(units: dict) -> None:
    """SIGTERM to the main process only; the rest is SIGKILLed only after a timeout a warm shutdown fits in.

    tests/integration/test_systemd_stop.py runs this command line and sends this signal to a worker mid-call.
    """
    unit = units["transcriber-worker@.service"]
    assert one(unit, "Service", "KillMode") == "mixed"  # the model processes must not get the SIGTERM
    assert one(unit, "Service", "KillSignal") == "SIGTERM"  # Celery's warm shutdown
    # A warm shutdown takes up to one heartbeat (a silent stretch of a call), then each of up to 8 model
    # processes (runner.default_concurrency) is given 5 s to exit (SupervisedModel.close); and a margin.
    heartbeat = Settings.model_fields["heartbeat_seconds"].default
    assert seconds(one(unit, "Service", "TimeoutStopSec")) >= 1.5 * (heartbeat + 8 * 5)
    command = shlex.split(one(unit, "Service", "ExecStart"))
    assert "--pool=threads" in command  # under prefork a stop waits for the running calls to finish instead
    assert "--hostname=worker%i@%H" in command  # two instances on one machine are two Celery nodes


@pytest.mark.parametrize("name", [name for name in SERVICES if "worker" not in name])
def test_the_other_services_stop_on_sigterm(units: dict, name: str) -> None:
    """beat, watch, metrics and flower stop themselves on SIGTERM (Celery beat and Flower handle it;
    ``ingest.stop_on_signals`` for the watcher and the exporter) and start no child processes."""
    unit = units[name]
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert one(unit, "Service", "KillMode") == "mixed"
    assert 10 <= seconds(one(unit, "Service", "TimeoutStopSec")) <= 60


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_hardened_and_writes_only_its_folders(units: dict, name: str) -> None:
    service = units[name]["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
    }.items():
        assert service.get(key) == [value], key
    assert "MemoryDenyWriteExecute" not in service  # CTranslate2 and torch generate code at run time
    writes = {path for line in service["ReadWritePaths"] for path in line.split()}
    assert writes == WRITES[name]
    assert WATCH_DIR not in writes  # recordings are read, never written


# ---------------------------------------------------------------- install.sh


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def enabled(root: Path) -> set[str]:
    return {link.name for link in (root / UNIT_DIR / "transcriber.target.wants").glob("*")}


def test_install_writes_the_files_with_the_paths_filled_in(installed: Path) -> None:
    env = installed / ENV_FILE.lstrip("/")
    assert mode(env) == 0o640
    text = env.read_text()
    for line in (f"DATA_DIR={DATA_DIR}", f"WATCH_DIR={WATCH_DIR}", f"OUTPUT_DIR={OUTPUT_DIR}",
                 f"WHISPER_MODEL_DIR={DATA_DIR}/models"):  # fmt: skip
        assert line in text.splitlines()
    for folder in (DATA_DIR, f"{DATA_DIR}/models", WATCH_DIR, OUTPUT_DIR):
        assert (installed / folder.lstrip("/")).is_dir()
    for name in UNITS:
        assert not re.findall(r"@[A-Z_]+@", (installed / UNIT_DIR / name).read_text())
    wrapper = installed / "usr/local/bin/transcriber"
    assert mode(wrapper) == 0o755 and f"TRANSCRIBER_ENV_FILE={ENV_FILE}" in wrapper.read_text()
    assert enabled(installed) == {
        "transcriber-worker@1.service",
        "transcriber-beat.service",
        "transcriber-watch.service",
        "transcriber-flower.service",
        "transcriber-metrics.service",
    }
    assert (installed / UNIT_DIR / "multi-user.target.wants" / "transcriber.target").is_symlink()


def test_a_first_install_enables_nothing_until_the_database_is_set(tmp_path: Path) -> None:
    done = install(tmp_path)
    assert "CHANGE_ME" in done.stdout and "again" in done.stdout
    assert enabled(tmp_path) == set()


def test_a_rerun_keeps_the_edited_settings_file_and_the_chosen_units(tmp_path: Path) -> None:
    install(tmp_path)
    configure(tmp_path, WHISPER_MODEL="tiny.en")
    env = tmp_path / ENV_FILE.lstrip("/")
    env.chmod(0o644)
    edited = env.read_bytes()
    install(tmp_path, "--no-beat", "--workers", "2", "--concurrency", "3")
    assert env.read_bytes() == edited and mode(env) == 0o640
    assert enabled(tmp_path) == {"transcriber-worker@1.service", "transcriber-worker@2.service",
                                 "transcriber-watch.service"}  # fmt: skip
    install(tmp_path)  # an upgrade: the options of the last run are kept
    assert enabled(tmp_path) == {"transcriber-worker@1.service", "transcriber-worker@2.service",
                                 "transcriber-watch.service"}  # fmt: skip
    worker = read_unit(tmp_path / UNIT_DIR / "transcriber-worker@.service")
    assert environment(worker)["WORKER_ARGS"] == "--concurrency=3"
    install(tmp_path, "--workers=1", "--beat", "--concurrency=auto")  # an option given now wins
    assert enabled(tmp_path) == {"transcriber-worker@1.service", "transcriber-beat.service",
                                 "transcriber-watch.service"}  # fmt: skip
    assert env.read_bytes() == edited


def test_install_takes_the_folders_from_an_existing_settings_file(tmp_path: Path) -> None:
    install(tmp_path)
    configure(tmp_path, WATCH_DIR="/mnt/calls", WHISPER_MODEL_DIR="/srv/models")
    install(tmp_path)
    worker = read_unit(tmp_path / UNIT_DIR / "transcriber-worker@.service")
    assert one(worker, "Service", "ReadWritePaths").split() == [DATA_DIR, OUTPUT_DIR, "/srv/models"]
    assert "/mnt/calls" in one(worker, "Unit", "RequiresMountsFor").split()
    done = install(tmp_path, "--watch-dir", "/srv/other", ok=False)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"install.sh: --watch-dir /srv/other, but {ENV_FILE} has WATCH_DIR=/mnt/calls: edit the file (it is what"
        " the services read), then run this again"
    ]


@pytest.mark.parametrize(
    ("args", "setting", "said"),
    [
        (["--workers", "many"], {}, "install.sh: --workers many: expected a whole number from 0 to 64"),
        (["--bogus"], {}, "install.sh: unknown option --bogus (see --help)"),
        ([], {"OUTPUT_DIR": "./transcripts"}, "install.sh: OUTPUT_DIR=./transcripts: expected an absolute path"),
        ([], {"DATA_DIR": "/var/lib/my data"}, "install.sh: DATA_DIR=/var/lib/my data: use letters, digits"),
        ([], {"TASK_TIMEOUT_SECONDS": "abc"}, "TASK_TIMEOUT_SECONDS=abc is invalid"),
    ],
)
def test_install_fails_with_one_line(tmp_path: Path, args: list[str], setting: dict[str, str], said: str) -> None:
    install(tmp_path)
    configure(tmp_path, **setting)
    done = install(tmp_path, *args, ok=False)
    assert done.returncode != 0
    assert len(done.stderr.splitlines()) == 1 and said in done.stderr, done.stderr


def test_install_refuses_a_prefix_without_transcriber(tmp_path: Path) -> None:
    done = install(tmp_path, prefix=tmp_path / "venv", ok=False)
    assert done.returncode == 1 and "does not exist (--prefix must hold an installed transcriber)" in done.stderr


def test_a_dry_run_changes_nothing(tmp_path: Path) -> None:
    done = install(tmp_path, "--dry-run", "--with-flower")
    assert list(tmp_path.iterdir()) == []
    assert "would run: install -m 0640 " in done.stdout and "transcriber-worker@.service" in done.stdout


def test_uninstall_removes_the_units_and_keeps_the_settings(installed: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    install(root, "--uninstall")
    assert [p for p in (root / UNIT_DIR).rglob("*") if p.is_file() or p.is_symlink()] == []
    assert not (root / "usr/local/bin/transcriber").exists()
    assert (root / ENV_FILE.lstrip("/")).read_bytes() == (installed / ENV_FILE.lstrip("/")).read_bytes()


def test_install_sh_is_shellcheck_clean() -> None:
    tool = shutil.which("shellcheck")
    if tool is None:
        pytest.fail("shellcheck is not installed: apt-get install shellcheck (scripts/test does)")
    done = subprocess.run([tool, str(INSTALL)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
