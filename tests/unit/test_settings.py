"""Settings from the environment and .env: defaults, overrides, and one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from transcriber.errors import ConfigError
from transcriber.settings import Settings, load_settings


def config_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("task_timeout_seconds", 7200),
        ("task_max_retries", 3),
        ("output_formats", "txt,srt,vtt,json"),
        ("formats", ("txt", "srt", "vtt", "json")),
        ("whisper_device", "auto"),
        ("whisper_model", "base"),
        ("whisper_model_dir", None),
        ("stuck_timeout_seconds", 300),
        ("heartbeat_seconds", 10.0),
        ("celery_broker_url", "filesystem://"),
        ("embedded_broker", True),
        ("log_level", "INFO"),
    ],
)
def test_defaults(attribute: str, expected: object) -> None:
    assert getattr(load_settings(), attribute) == expected


def test_default_database_is_sqlite_under_an_absolute_data_dir() -> None:
    settings = load_settings()
    assert settings.data_dir == Path.cwd() / "data"
    assert settings.database_url == f"sqlite:///{(Path.cwd() / 'data' / 'transcriber.db').as_posix()}"


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("TASK_TIMEOUT_SECONDS", "0", "task_timeout_seconds", 0),
        ("TASK_MAX_RETRIES", "0", "task_max_retries", 0),
        ("WHISPER_DEVICE", " CUDA ", "whisper_device", "cuda"),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("OUTPUT_FORMATS", "SRT, txt,srt", "formats", ("srt", "txt")),  # order kept, duplicates dropped
        ("OUTPUT_FORMATS", "none", "formats", ()),  # no files, on purpose: the database keeps the transcript
        ("OUTPUT_FORMATS", " None ", "output_formats", "none"),
        # Heroku-style, and no driver (psycopg 3 to SQLAlchemy 2.1, not installed): the driver we install
        ("DATABASE_URL", "postgres://u:p@h:5432/db", "database_url", "postgresql+psycopg2://u:p@h:5432/db"),
        (
            "DATABASE_URL",
            "postgresql://u:postgres@h/postgres",
            "database_url",
            "postgresql+psycopg2://u:postgres@h/postgres",
        ),
        ("DATABASE_URL", "postgres+psycopg2://u:p@h/db", "database_url", "postgresql+psycopg2://u:p@h/db"),
        ("DATABASE_URL", "postgresql+psycopg://u:p@h/db", "database_url", "postgresql+psycopg://u:p@h/db"),  # chosen
        ("DATABASE_URL", "sqlite:////var/lib/t.db", "database_url", "sqlite:////var/lib/t.db"),
        ("WHISPER_MODEL_DIR", "  ", "whisper_model_dir", None),
        ("WHISPER_LANGUAGE", " EN ", "whisper_language", "en"),
        ("WHISPER_VAD_FILTER", "false", "whisper_vad_filter", False),
        ("DATABASE_URL", " postgresql+psycopg2://u:p@h/db ", "database_url", "postgresql+psycopg2://u:p@h/db"),
        ("CELERY_BROKER_URL", "redis://h:6379/0", "embedded_broker", False),
        ("task_max_retries", "5", "task_max_retries", 5),  # names are case-insensitive
    ],
)
def test_environment_overrides(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(name, value)
    assert getattr(load_settings(), attribute) == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TASK_TIMEOUT_SECONDS": "abc"}, "TASK_TIMEOUT_SECONDS"),
        ({"TASK_TIMEOUT_SECONDS": "1.5"}, "TASK_TIMEOUT_SECONDS"),
        ({"TASK_TIMEOUT_SECONDS": "-1"}, "TASK_TIMEOUT_SECONDS"),
        ({"TASK_MAX_RETRIES": "-1"}, "TASK_MAX_RETRIES"),
        ({"WHISPER_DEVICE": "gpu"}, "WHISPER_DEVICE"),
        ({"WHISPER_BEAM_SIZE": "0"}, "WHISPER_BEAM_SIZE"),
        ({"WHISPER_VAD_FILTER": "maybe"}, "WHISPER_VAD_FILTER"),
        ({"OUTPUT_FORMATS": "txt,doc"}, "OUTPUT_FORMATS"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"HEARTBEAT_SECONDS": "0"}, "HEARTBEAT_SECONDS"),
        ({"STUCK_TIMEOUT_SECONDS": "29", "HEARTBEAT_SECONDS": "10"}, "STUCK_TIMEOUT_SECONDS"),
        ({"STUCK_TIMEOUT_SECONDS": "20"}, "STUCK_TIMEOUT_SECONDS"),  # against the default 10 s heartbeat
        ({"DATABASE_URL": "nourl"}, "DATABASE_URL"),
        ({"CELERY_BROKER_URL": "localhost:6379"}, "CELERY_BROKER_URL"),
        # Empty would be the working folder: the watcher would register whatever lies there.
        ({"WATCH_DIR": ""}, "WATCH_DIR"),
        ({"WATCH_DIR": "  "}, "WATCH_DIR"),
        ({"OUTPUT_DIR": ""}, "OUTPUT_DIR"),
        ({"DATA_DIR": ""}, "DATA_DIR"),
        ({"OUTPUT_FORMATS": ""}, "OUTPUT_FORMATS"),
        ({"OUTPUT_FORMATS": " , "}, "OUTPUT_FORMATS"),
        ({"OUTPUT_FORMATS": "none,txt"}, "OUTPUT_FORMATS"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    message = config_error(monkeypatch, env)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{variable}")
    assert "is invalid: expected" in message


def test_bad_value_shows_what_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_error(monkeypatch, {"TASK_TIMEOUT_SECONDS": "abc"}).startswith("TASK_TIMEOUT_SECONDS=abc ")


def test_several_bad_values_still_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, {"TASK_TIMEOUT_SECONDS": "abc", "WHISPER_DEVICE": "gpu"})
    assert len(message.splitlines()) == 1
    assert message.endswith("(and 1 more)")


def test_stuck_timeout_of_exactly_three_heartbeats_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUCK_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("HEARTBEAT_SECONDS", "10")
    assert load_settings().stuck_timeout_seconds == 30


def test_password_of_a_valid_url_stays_out_of_another_variables_error(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(
        monkeypatch, {"DATABASE_URL": "postgresql+psycopg2://u:secret@h/db", "TASK_TIMEOUT_SECONDS": "abc"}
    )
    assert "secret" not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DATABASE_URL", "u:secret@h:5432/db"), ("CELERY_BROKER_URL", "redis:/:secret@h:6379/0")],
)
def test_password_of_an_invalid_url_is_masked(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    message = config_error(monkeypatch, {variable: value})
    assert message.startswith(variable)
    assert "secret" not in message


def test_dot_env_in_the_working_folder_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TASK_MAX_RETRIES=7\nWHISPER_DEVICE=cpu\n", encoding="utf-8")
    settings = load_settings()
    assert (settings.task_max_retries, settings.whisper_device) == (7, "cpu")


def test_environment_beats_dot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TASK_MAX_RETRIES=7\n", encoding="utf-8")
    monkeypatch.setenv("TASK_MAX_RETRIES", "5")
    assert load_settings().task_max_retries == 5


def test_bad_value_in_dot_env_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TASK_TIMEOUT_SECONDS=abc\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^TASK_TIMEOUT_SECONDS=abc "):
        load_settings()


def test_env_file_variable_names_the_file_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TASK_MAX_RETRIES=7\n", encoding="utf-8")  # not read: another file is named
    named = tmp_path / "conf dir" / "prod.env"
    named.parent.mkdir()
    named.write_text("TASK_TIMEOUT_SECONDS=900\n", encoding="utf-8")
    monkeypatch.setenv("TRANSCRIBER_ENV_FILE", str(named))
    settings = load_settings()
    assert (settings.task_timeout_seconds, settings.task_max_retries) == (900, 3)


def test_env_file_argument_is_used(tmp_path: Path) -> None:
    named = tmp_path / "other.env"
    named.write_text("OUTPUT_FORMATS=srt\n", encoding="utf-8")
    assert load_settings(named).formats == ("srt",)


@pytest.mark.parametrize("missing", ["missing.env", "/no/such/folder/.env"])
def test_env_file_variable_pointing_nowhere_is_a_config_error(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    message = config_error(monkeypatch, {"TRANSCRIBER_ENV_FILE": missing})
    assert len(message.splitlines()) == 1
    assert message.startswith(f"TRANSCRIBER_ENV_FILE={missing} ")


def test_env_file_variable_pointing_at_a_folder_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert config_error(monkeypatch, {"TRANSCRIBER_ENV_FILE": str(tmp_path)}).startswith("TRANSCRIBER_ENV_FILE=")


def test_missing_default_dot_env_is_fine() -> None:
    assert isinstance(load_settings(), Settings)


def test_keyword_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_MAX_RETRIES", "5")
    assert load_settings(task_max_retries=1).task_max_retries == 1


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        (
            "WATCH_DIR",
            "WATCH_DIR= is invalid: expected a folder path, e.g. ./inbox (empty would mean the working folder)",
        ),
        ("OUTPUT_DIR", "OUTPUT_DIR= is invalid: expected a folder path, e.g. ./transcripts"),
        (
            "OUTPUT_FORMATS",
            "OUTPUT_FORMATS= is invalid: expected a comma-separated list of txt, srt, vtt, json (or none",
        ),
    ],
)
def test_empty_folder_or_formats_says_what_to_write(
    monkeypatch: pytest.MonkeyPatch, variable: str, expected: str
) -> None:
    assert config_error(monkeypatch, {variable: ""}).startswith(expected)


def test_empty_watch_dir_in_dot_env_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WATCH_DIR=\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^WATCH_DIR= is invalid"):
        load_settings()
