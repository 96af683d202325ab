"""What the README, the operations guide and .env.example say is what the code does: the commands and their
options, the settings and their defaults, the SQL. Each check is a function that returns what is wrong, so a test
also shows that it catches a wrong text."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from transcriber.cli import _parser
from transcriber.errors import ConfigError
from transcriber.settings import ENV_FILE_VARIABLE, Settings, load_settings
from transcriber.tables import Base

ROOT = Path(__file__).parents[2]
DOCS = ("README.md", "docs/operations.md")
# The Windows guide too, for what it shows of commands, settings and tables (its own words are its own).
GUIDES = (*DOCS, "docs/windows.md")
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS = {name.upper(): name for name in Settings.model_fields}
# Upper-case names in the docs that are not settings, each for a reason.
NOT_SETTINGS = {
    ENV_FILE_VARIABLE,  # names the .env file
    "TORCH_SPEC",  # scripts/test
    "EVENT_ID",  # a placeholder: webhooks retry EVENT_ID
    "CHANGE_ME",  # the password placeholder in .env.example
    "HTTPS_PROXY",  # pip's proxy (docs/windows.md)
    "CTRL_BREAK",  # the console event transcriber run stops its children with on Windows
    "CREATE_NO_WINDOW",  # the flag the model processes start with on Windows
}
# .env.example shows a production value for these, not the default (empty: the embedded default).
EXAMPLE_NOT_DEFAULT = {"DATABASE_URL", "CELERY_BROKER_URL"}
# `NAME=value` spans that show a value on purpose refused (the README quotes the error it gives).
REFUSED_ON_PURPOSE = {"TASK_TIMEOUT_SECONDS=abc"}


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def takes_json() -> set[str]:
    return {name for name, sub in subcommands().items() if "--json" in sub._option_string_actions}


def passes_through() -> set[str]:
    """Commands whose arguments go to Celery or Flower (``worker``, ``beat``, ``flower``)."""
    return {name for name, sub in subcommands().items() if sub.get_default("passthrough")}


def claimed(text: str) -> tuple[set[str], set[str]]:
    """The commands a doc says take ``--json``, and those it says do not, from its one sentence about it."""
    sentence = re.search(r"((?:`\w+`(?:, | and ))+`\w+`) take `--json`[^;]*; ((?:`\w+`[^`]*)+) do not", text)
    assert sentence, "the sentence naming the commands that take --json is gone"
    return set(re.findall(r"`(\w+)`", sentence[1])), set(re.findall(r"`(\w+)`", sentence[2]))


def json_claim_errors(text: str) -> list[str]:
    """What a doc's sentence about ``--json`` gets wrong: both of its lists must be exact."""
    yes, no = claimed(" ".join(text.split()))
    real, rest = takes_json(), set(subcommands()) - takes_json() - passes_through()
    return [
        *(f"`{c}` is said to take --json but does not" for c in sorted(yes - real)),
        *(f"`{c}` takes --json but is not named" for c in sorted(real - yes)),
        *(f"`{c}` is said not to take --json but does" for c in sorted(no & real)),
        *(f"`{c}` takes no --json but is not named among those that do not" for c in sorted(rest - no)),
    ]


def test_readme_names_exactly_the_commands_that_take_json() -> None:
    assert json_claim_errors(read("README.md")) == []


def test_operations_guide_names_exactly_the_commands_that_take_json() -> None:
    text = read("docs/operations.md")
    assert "Every command takes `--json`" not in text
    assert json_claim_errors(text) == []


def test_a_wrong_json_sentence_is_caught() -> None:
    readme = read("README.md")
    assert json_claim_errors(readme.replace("`status`, `list`,", "`status`, `export`, `list`,", 1)) == [
        "`export` is said to take --json but does not"
    ]
    assert json_claim_errors(readme.replace(" and `doctor` take", " take", 1)) == [
        "`doctor` takes --json but is not named"
    ]
    assert json_claim_errors(readme.replace("`export` (which writes a file), ", "", 1)) == [
        "`export` takes no --json but is not named among those that do not"
    ]


def test_every_operator_command_is_in_the_readme_table() -> None:
    readme = read("README.md")
    for name in ("status", "list", "failed", "attempts", "reset", "skip", "export", "transcribe", "watch"):
        assert f"| `transcriber {name}" in readme, name


# ---------------------------------------------------------------- commands and options shown


def prose_and_code(doc: str) -> tuple[str, list[tuple[str, str]]]:
    """The text outside fenced blocks (fences blanked, so line numbers hold) and each block's (language, body)."""
    blocks: list[tuple[str, str]] = []

    def keep(match: re.Match[str]) -> str:
        blocks.append((match[1], match[2]))
        return "\n" * match[0].count("\n")

    return re.sub(r"^ *```(\w*)\n(.*?)^ *```", keep, doc, flags=re.S | re.M), blocks


def inline_code(doc: str) -> list[str]:
    """Every `code span` outside fenced blocks, its whitespace (a span may wrap a line) made single spaces."""
    prose, _ = prose_and_code(doc)
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]


SHELL_COMMAND = r"(?:^ *|\\)transcriber(?:\.exe)? +([a-z].*)$"  # at a line's start, or a path's end


def command_lines(doc: str) -> list[str]:
    """Each command a doc shows: `transcriber ...` spans, `status --needs-review` spans, lines of shell blocks."""
    names = set(subcommands())
    shown = []
    for span in inline_code(doc):
        words = span.split()
        if (words[0] == "transcriber" and len(words) > 1) or (words[0] in names and "--" in span):
            shown.append(span)
    for _, body in prose_and_code(doc)[1]:  # bash, and PowerShell's .\venv\Scripts\transcriber.exe status
        shown += ["transcriber " + " ".join(m[1].split()) for m in re.finditer(SHELL_COMMAND, body, flags=re.M)]
    return shown


def command_errors(doc: str) -> list[str]:
    """Commands that do not exist, and options their parser does not take (Celery's own pass through unchecked)."""
    commands, errors = subcommands(), []
    for line in command_lines(doc):
        words = line.split()
        name = words[1] if words[0] == "transcriber" else words[0]
        if name not in commands:
            errors.append(f"{line!r}: there is no command {name!r}")
            continue
        if name in passes_through():
            continue
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
            if option not in commands[name]._option_string_actions:
                errors.append(f"{line!r}: `transcriber {name}` takes no {option}")
    return errors


def test_every_command_and_option_shown_exists() -> None:
    assert [error for doc in GUIDES for error in command_errors(read(doc))] == []


def test_a_command_or_option_that_does_not_exist_is_caught() -> None:
    doc = "Run `transcriber list --colour` or\n\n```bash\ntranscriber frobnicate  # no such\n```\n"
    assert command_errors(doc) == [
        "'transcriber list --colour': `transcriber list` takes no --colour",
        "'transcriber frobnicate # no such': there is no command 'frobnicate'",
    ]
    assert command_errors("`status --needs-reveiw`") == [
        "'status --needs-reveiw': `transcriber status` takes no --needs-reveiw"
    ]
    assert command_errors("`transcriber worker --concurrency=2`") == []  # Celery's option, passed through


# ---------------------------------------------------------------- settings


def setting_name_errors(doc: str) -> list[str]:
    """Upper-case names with an underscore that are neither a setting nor known to be something else."""
    names = set(re.findall(r"(?<![\w.-])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", doc))
    return [f"{name} is not a setting" for name in sorted(names - set(SETTINGS) - NOT_SETTINGS)]


@pytest.mark.parametrize("doc", [*GUIDES, ".env.example"])
def test_every_setting_named_exists(doc: str) -> None:
    assert setting_name_errors(read(doc)) == []


def test_a_setting_that_does_not_exist_is_caught() -> None:
    assert setting_name_errors("`WHISPER_THREADS=2` and WORKER_MAX_TASKS") == ["WHISPER_THREADS is not a setting"]


def env_example_values() -> list[tuple[str, str]]:
    """The NAME=value lines of .env.example (the commented-out TRANSCRIBER_ENV_FILE is not a setting)."""
    return re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(encoding="utf-8"), flags=re.M)


def test_env_example_lists_every_setting_once_and_nothing_else() -> None:
    names = [name for name, _ in env_example_values()]
    assert sorted(names) == sorted(SETTINGS)


def loaded(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> object:
    """What the setting ``name`` becomes when the variable is set to ``value``, as a process would read it."""
    monkeypatch.setenv(name, value)
    try:
        return getattr(load_settings(), SETTINGS[name])
    finally:
        monkeypatch.delenv(name)


def default_errors(monkeypatch: pytest.MonkeyPatch, pairs: list[tuple[str, str]]) -> list[str]:
    """``NAME=value`` pairs whose value is not what the setting is when unset."""
    default = load_settings()
    return [
        f"{name}={value} but the default is {getattr(default, SETTINGS[name])!r}"
        for name, value in pairs
        if loaded(monkeypatch, name, value) != getattr(default, SETTINGS[name])
    ]


def test_env_example_shows_each_default(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = [(name, value) for name, value in env_example_values() if name not in EXAMPLE_NOT_DEFAULT]
    assert default_errors(monkeypatch, pairs) == []


def test_env_example_production_values_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env_example_values():
        if name in EXAMPLE_NOT_DEFAULT:
            loaded(monkeypatch, name, value)


def test_a_wrong_default_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_errors(monkeypatch, [("TASK_MAX_RETRIES", "5"), ("DATA_DIR", "./data")]) == [
        "TASK_MAX_RETRIES=5 but the default is 3"
    ]


def defaults_claimed(doc: str) -> list[tuple[str, str]]:
    """Defaults the prose states: `NAME` (600), `NAME` (2 s), `NAME=x`, the default / (the default), (default 2: ..."""
    prose = " ".join(prose_and_code(doc)[0].split())
    found = re.findall(r"`([A-Z][A-Z0-9_]+)` \((\d+(?:\.\d+)?)(?: s| days)?\)", prose)
    found += re.findall(r"`([A-Z][A-Z0-9_]+)=([^`]*)`,? \(?the default\b", prose)
    found += re.findall(r"`([A-Z][A-Z0-9_]+)`[\w ]{0,20}\(default (\d+(?:\.\d+)?)\b", prose)
    return found


@pytest.mark.parametrize("doc", GUIDES)
def test_every_default_stated_in_the_prose_is_the_default(monkeypatch: pytest.MonkeyPatch, doc: str) -> None:
    claims = defaults_claimed(read(doc))
    assert claims or doc != "README.md"  # the README states several: a pattern that finds none is broken
    assert default_errors(monkeypatch, claims) == []


def test_a_wrong_default_in_the_prose_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = "`DISPATCH_INTERVAL_SECONDS` (5 s); `CHANNELS=mix` (the default); `DIARIZE_MAX_SPEAKERS` voices (default 3:"
    assert defaults_claimed(doc) == [
        ("DISPATCH_INTERVAL_SECONDS", "5"),
        ("CHANNELS", "mix"),
        ("DIARIZE_MAX_SPEAKERS", "3"),
    ]
    assert len(default_errors(monkeypatch, defaults_claimed(doc))) == 3


def value_examples(doc: str) -> list[tuple[str, str]]:
    """Every `NAME=value` span naming a setting."""
    pairs = [re.fullmatch(r"([A-Z][A-Z0-9_]+)=(\S*)", span) for span in inline_code(doc)]
    return [(p[1], p[2]) for p in pairs if p and p[1] in SETTINGS and p[0] not in REFUSED_ON_PURPOSE]


@pytest.mark.parametrize("doc", GUIDES)
def test_every_value_shown_for_a_setting_is_accepted(monkeypatch: pytest.MonkeyPatch, doc: str) -> None:
    refused = []
    for name, value in value_examples(read(doc)):
        try:
            loaded(monkeypatch, name, value)
        except ConfigError as exc:
            refused.append(str(exc))
    assert refused == []


def test_the_quoted_error_for_a_bad_setting_is_the_one_given(monkeypatch: pytest.MonkeyPatch) -> None:
    quoted = re.search(r"\(`(TASK_TIMEOUT_SECONDS=abc is invalid: [^`]*)`\)", " ".join(read("README.md").split()))
    assert quoted, "the README's example of a bad setting is gone"
    with pytest.raises(ConfigError) as caught:
        loaded(monkeypatch, "TASK_TIMEOUT_SECONDS", "abc")
    assert str(caught.value) == quoted[1]


# ---------------------------------------------------------------- SQL


def sql_statements(doc: str) -> list[str]:
    """The statements of the doc's sql blocks, and its inline `SELECT ...`/`UPDATE ...` spans."""
    statements = []
    for language, body in prose_and_code(doc)[1]:
        if language == "sql":
            body = re.sub(r"--[^\n]*", "", body)
            statements += [s.strip() for s in body.split(";") if s.strip()]
    statements += [s.rstrip(";") for s in inline_code(doc) if re.match(r"(SELECT|UPDATE|DELETE) ", s)]
    return statements


def sql_errors(statements: list[str]) -> list[str]:
    """Statements that do not run against the tables as tables.py defines them (SQLite in memory: no server)."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    errors = []
    with engine.connect() as connection:
        for statement in statements:
            try:
                connection.execute(text(statement))
            except Exception as exc:  # an unknown column or table, or syntax only Postgres has
                errors.append(f"{statement}: {str(getattr(exc, 'orig', exc)).splitlines()[0]}")
            connection.rollback()
    engine.dispose()
    return errors


@pytest.mark.parametrize("doc", GUIDES)
def test_the_sql_shown_runs_against_the_tables(doc: str) -> None:
    statements = sql_statements(read(doc))
    assert statements
    assert sql_errors(statements) == []


def test_sql_on_a_column_that_does_not_exist_is_caught() -> None:
    assert sql_errors(["SELECT file_name, retries FROM recordings WHERE status = 'failed'"]) == [
        "SELECT file_name, retries FROM recordings WHERE status = 'failed': no such column: retries"
    ]
    doc = "```sql\n-- a comment\nSELECT count(a.*) FROM attempts a;\n```\n`UPDATE recording SET status='skipped';`"
    assert sql_statements(doc) == ["SELECT count(a.*) FROM attempts a", "UPDATE recording SET status='skipped'"]
    assert len(sql_errors(sql_statements(doc))) == 2  # count(a.*) is Postgres only; no table "recording"


def column_errors(doc: str) -> list[str]:
    """`table.column` names in the prose that tables.py does not have."""
    tables = Base.metadata.tables
    named = re.findall(r"`([a-z_]+)\.([a-z_]+)`", prose_and_code(doc)[0])
    return [f"{t}.{c} does not exist" for t, c in named if t in tables and c not in tables[t].columns]


@pytest.mark.parametrize("doc", GUIDES)
def test_every_column_named_exists(doc: str) -> None:
    assert column_errors(read(doc)) == []


def test_a_column_that_does_not_exist_is_caught() -> None:
    assert column_errors("kept in `recordings.file_path_bytes` and `attempts.reason`") == [
        "attempts.reason does not exist"
    ]


def test_the_statuses_and_outcomes_named_are_the_real_ones() -> None:
    from transcriber.tables import AttemptOutcome, RecordingStatus

    readme = " ".join(read("README.md").split())
    assert f"status `{'|'.join(s.value for s in RecordingStatus)}`" in readme
    assert f"(`{'|'.join(o.value for o in AttemptOutcome)}`)" in readme


# ---------------------------------------------------------------- examples of output


def test_the_guides_doctor_example_is_what_doctor_says() -> None:
    from transcriber.doctor import limit_advice

    guide = read("docs/operations.md")
    shown = re.search(r"```\n(FAIL  time limit .*?)```", guide, flags=re.S)
    assert shown, "the guide's example of the time-limit line is gone"
    # Before the incident: a 30-minute limit, calls of about an hour, 0.6 s of work per second of audio.
    check = limit_advice(timeout_seconds=1800, realtime_factor=0, durations=[3702, 3650, 3600, 3000], speeds=[0.6] * 20)
    said = f"{check.status.upper():<5} {check.name:<11} {check.detail}"  # as cli._doctor prints it
    assert " ".join(shown[1].split()) == " ".join(said.split())
