"""Settings: built once at an entry point and handed down, never read at import.

Every setting is an environment variable (or a line of the ``.env`` file; the
variable ``TRANSCRIBER_ENV_FILE`` names another file, e.g. ``C:\\app\\.env``).
A bad value raises ``ConfigError`` with one line naming the variable and what it
accepts; entry points print that line and exit, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from transcriber.errors import ConfigError

OUTPUT_FORMAT_CHOICES = ("txt", "srt", "vtt", "json")
ENV_FILE_VARIABLE = "TRANSCRIBER_ENV_FILE"

# What each variable accepts, for the one-line error.
_ACCEPTS: dict[str, str] = {
    "database_url": "an SQLAlchemy URL, e.g. postgresql+psycopg2://user:pass@host:5432/transcriber (empty = SQLite)",
    "celery_broker_url": "a Celery broker URL, e.g. redis://127.0.0.1:6379/0 (empty = folder broker)",
    "task_timeout_seconds": "a whole number of seconds >= 0 (0 = no limit)",
    "task_timeout_realtime_factor": "a number >= 0 (0 = off)",
    "task_max_retries": "a whole number >= 0",
    "retry_backoff_seconds": "a number of seconds >= 0",
    "retry_backoff_max_seconds": "a number of seconds >= 0",
    "stuck_timeout_seconds": "a whole number of seconds > 0, at least 3 x HEARTBEAT_SECONDS",
    "heartbeat_seconds": "a number of seconds > 0",
    "split_min_seconds": "a number of seconds >= 0 (0 = never split a call)",
    "split_target_seconds": "a number of seconds >= 30",
    "cleanup_interval_seconds": "a number of seconds > 0",
    "dispatch_interval_seconds": "a number of seconds > 0",
    "broker_visibility_timeout_seconds": "a whole number of seconds >= 0 (0 = derived from the time limit)",
    "whisper_device": "one of auto, cpu, cuda",
    "whisper_compute_type": "auto or a CTranslate2 compute type (int8, int8_float16, float16, float32, ...)",
    "whisper_cpu_threads": "a whole number >= 0 (0 = the cores divided among the worker's model processes)",
    "whisper_beam_size": "a whole number >= 1",
    "whisper_vad_filter": "true or false",
    "whisper_batch_size": "a whole number >= 0 (0 = sequential decoding)",
    "whisper_word_timestamps": "true or false",
    "whisper_condition_on_previous_text": "true or false",
    "whisper_hallucination_silence_threshold": "a number of seconds >= 0 (0 = off)",
    "whisper_repair": "true or false",
    "whisper_multilingual": "true or false",
    "channels": "one of auto, mix, split",
    "speaker_labels": "two labels separated by a comma, e.g. caller,callee",
    "diarize": "one of auto, on, off",
    "diarize_max_speakers": "a whole number from 1 to 8",
    "diarize_labels": "labels separated by commas, e.g. agent,customer (empty: speaker 1, speaker 2, ...)",
    "filename_pattern": "a regular expression with named groups among phone, date, time, datetime, contact, "
    "direction (empty: the built-in patterns only)",
    "phone_region": "a two-letter country code, e.g. DE (empty: numbers without + are kept as written)",
    "filename_timezone": "an IANA time zone name, e.g. Europe/Berlin (empty: the times in file names are UTC)",
    "worker_max_tasks": "a whole number >= 0 (0 = never recycle by count)",
    "worker_max_memory_mb": "a whole number of MB >= 0 (0 = never recycle by memory)",
    "output_formats": "a comma-separated list of txt, srt, vtt, json (or none: no files, database only)",
    "data_dir": "a folder path, e.g. ./data (empty would mean the working folder)",
    "watch_dir": "a folder path, e.g. ./inbox (empty would mean the working folder)",
    "output_dir": "a folder path, e.g. ./transcripts (empty would mean the working folder)",
    "watch_settle_seconds": "a number of seconds >= 0",
    "watch_poll_seconds": "a number of seconds > 0",
    "log_level": "one of DEBUG, INFO, WARNING, ERROR",
    "flower_basic_auth": "user:password, or several separated by commas",
    "webhook_url": "an http:// or https:// URL that receives the events",
    "webhook_secret": "a shared secret to sign deliveries with (HMAC-SHA256), e.g. from `openssl rand -hex 32`",
    "webhook_timeout_seconds": "a number of seconds > 0",
    "webhook_max_attempts": "a whole number >= 1",
    "webhook_keep_days": "a whole number of days >= 0 (0 keeps delivered events for good)",
    "metrics_port": "a TCP port, 1-65535",
    "redact": "one of off, numbers, all",
}


class Settings(BaseSettings):
    """All configuration of a transcriber process."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # Empty = the embedded default: SQLite and a folder broker under DATA_DIR (no server needed).
    data_dir: Path = Path("data")
    database_url: str = ""
    celery_broker_url: str = ""
    watch_dir: Path = Path("inbox")
    output_dir: Path = Path("transcripts")

    task_timeout_seconds: int = Field(7200, ge=0)
    task_timeout_realtime_factor: float = Field(0.0, ge=0)
    task_max_retries: int = Field(3, ge=0)
    retry_backoff_seconds: float = Field(30.0, ge=0)
    retry_backoff_max_seconds: float = Field(3600.0, ge=0)
    stuck_timeout_seconds: int = Field(300, gt=0)
    heartbeat_seconds: float = Field(10.0, gt=0)
    cleanup_interval_seconds: float = Field(60.0, gt=0)
    # How often beat looks for queued recordings that are due (a retry whose backoff ended, an SQL reset).
    dispatch_interval_seconds: float = Field(2.0, gt=0)
    # A call longer than this is cut at silences into pieces of about SPLIT_TARGET_SECONDS that any free worker
    # transcribes, then merged (lifecycle.py, splitting.py); 0 = every call in one piece.
    split_min_seconds: float = Field(600.0, ge=0)
    split_target_seconds: float = Field(300.0, ge=30)
    # Redis redelivers an unacknowledged message after this long; 0 = derived (at least 12 h, above any limit).
    broker_visibility_timeout_seconds: int = Field(0, ge=0)

    whisper_model: str = "base"
    whisper_model_dir: Path | None = None
    whisper_device: Literal["auto", "cpu", "cuda"] = "auto"
    whisper_compute_type: str = "auto"
    whisper_cpu_threads: int = Field(0, ge=0)
    whisper_beam_size: int = Field(5, ge=1)
    whisper_language: str = ""
    whisper_vad_filter: bool = True
    whisper_batch_size: int = Field(0, ge=0)
    whisper_word_timestamps: bool = False
    # Against invented text on silence, hold music and ringing (see README "Call-aware transcripts").
    whisper_condition_on_previous_text: bool = False
    whisper_hallucination_silence_threshold: float = Field(2.0, ge=0)
    # Speech that VAD hears but the transcript has no text for is decoded again on its own (decoding.py).
    whisper_repair: bool = True
    # Detect the language of every 30-s window (a call that switches language), not only of the first.
    whisper_multilingual: bool = True
    channels: Literal["auto", "mix", "split"] = "auto"
    speaker_labels: str = "caller,callee"
    # Speaker turns on mono calls (speakers.py, diarization.py): auto = when transcriber[speakers] is installed.
    diarize: Literal["auto", "on", "off"] = "auto"
    diarize_max_speakers: int = Field(2, ge=1, le=8)
    diarize_labels: str = ""
    # The call's facts from its file name (callfacts.py): a regex with named groups, tried before the built-in ones.
    filename_pattern: str = ""
    phone_region: str = ""
    filename_timezone: str = ""
    output_formats: str = "txt,srt,vtt,json"

    worker_max_tasks: int = Field(200, ge=0)
    worker_max_memory_mb: int = Field(0, ge=0)

    watch_settle_seconds: float = Field(5.0, ge=0)
    watch_poll_seconds: float = Field(30.0, gt=0)
    watch_trust_close: bool = True  # a file closed after writing is complete (Linux); renames always are
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # user:password[,user2:password2] for Flower's basic auth; never printed.
    flower_basic_auth: SecretStr = SecretStr("")
    # Reaching people (issue 14): signed webhooks from the outbox, Prometheus metrics, redacted copies.
    webhook_url: SecretStr = SecretStr("")  # a URL may carry a token: never printed whole
    webhook_secret: SecretStr = SecretStr("")
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_max_attempts: int = Field(15, ge=1)
    webhook_backoff_seconds: float = Field(10.0, gt=0)
    webhook_backoff_max_seconds: float = Field(3600.0, gt=0)
    webhook_keep_days: int = Field(30, ge=0)  # delivered events are deleted after this; 0 = kept for good
    metrics_port: int = Field(9808, ge=1, le=65535)
    metrics_address: str = "127.0.0.1"
    redact: Literal["off", "numbers", "all"] = "off"

    @field_validator("whisper_device", "channels", "diarize", "redact", mode="before")
    @classmethod
    def _normalise_choice(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_before(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("output_formats")
    @classmethod
    def _check_formats(cls, value: str) -> str:
        formats = [part.strip().lower() for part in value.split(",") if part.strip()]
        if formats == ["none"]:  # said on purpose; an empty value is more often a slip
            return "none"
        if not formats:
            raise ValueError("empty")
        unknown = [fmt for fmt in formats if fmt not in OUTPUT_FORMAT_CHOICES]
        if unknown:
            raise ValueError(f"unknown format {unknown[0]!r}")
        return ",".join(dict.fromkeys(formats))

    @field_validator("data_dir", "watch_dir", "output_dir", mode="before")
    @classmethod
    def _folder_not_empty(cls, value: Any) -> Any:
        # Path("") is the working folder: WATCH_DIR= would register whatever lies there.
        if isinstance(value, str | os.PathLike) and not str(value).strip():
            raise ValueError("empty")
        return value

    @field_validator("whisper_model_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("speaker_labels")
    @classmethod
    def _two_labels(cls, value: str) -> str:
        labels = [part.strip() for part in value.split(",")]
        if len(labels) != 2 or not all(labels):
            raise ValueError("not two labels")
        return ",".join(labels)

    @property
    def speakers(self) -> tuple[str, str]:
        first, second = self.speaker_labels.split(",")
        return first, second

    @field_validator("diarize_labels")
    @classmethod
    def _labels(cls, value: str) -> str:
        labels = [part.strip() for part in value.split(",")] if value.strip() else []
        if any(not label for label in labels) or len(set(labels)) != len(labels):
            raise ValueError("empty or repeated label")
        return ",".join(labels)

    @property
    def diarize_names(self) -> tuple[str, ...]:
        """The labels to give speakers in order of first speech (``speakers.names`` fills in the rest)."""
        return tuple(self.diarize_labels.split(",")) if self.diarize_labels else ()

    @field_validator("filename_pattern")
    @classmethod
    def _filename_pattern(cls, value: str) -> str:
        from transcriber.callfacts import check_pattern

        reason = check_pattern(value)
        if reason:
            raise ValueError(reason)
        return value

    @field_validator("phone_region")
    @classmethod
    def _phone_region(cls, value: str) -> str:
        from transcriber.callfacts import check_region

        value = value.strip().upper()
        if value and (len(value) != 2 or not value.isalpha() or check_region(value)):
            raise ValueError("not a known two-letter country code")
        return value

    @field_validator("filename_timezone")
    @classmethod
    def _filename_timezone(cls, value: str) -> str:
        from transcriber.callfacts import check_timezone

        value = value.strip()
        reason = check_timezone(value)
        if reason:
            raise ValueError(reason)
        return value

    @field_validator("flower_basic_auth")
    @classmethod
    def _basic_auth(cls, value: SecretStr) -> SecretStr:
        pairs = [p for p in value.get_secret_value().split(",") if p.strip()]
        if any(":" not in p or not p.split(":", 1)[0] or not p.split(":", 1)[1] for p in pairs):
            raise ValueError("not user:password")
        return value

    @field_validator("whisper_language")
    @classmethod
    def _language(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("database_url", "celery_broker_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if value and "://" not in value:
            raise ValueError("not a URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_driver(cls, value: str) -> str:
        # Heroku-style postgres:// is not a dialect SQLAlchemy knows, and a URL without a driver means psycopg 3
        # to SQLAlchemy 2.1: both get the driver transcriber installs (psycopg2).
        scheme, sep, rest = value.partition("://")
        dialect, _, driver = scheme.lower().partition("+")
        if sep and dialect in ("postgres", "postgresql"):
            return f"postgresql+{driver or 'psycopg2'}://{rest}"
        return value

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().absolute()  # child processes may start elsewhere
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'transcriber.db').as_posix()}"
        if not self.celery_broker_url:
            self.celery_broker_url = "filesystem://"
        return self

    @property
    def embedded_broker(self) -> bool:
        """True for kombu's folder broker (one machine, no server)."""
        return self.celery_broker_url.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value().strip()
        if url and not url.lower().startswith(("http://", "https://")):
            raise ValueError("not an http(s) URL")
        return SecretStr(url)

    @model_validator(mode="after")
    def _signed_webhooks(self) -> Settings:
        if self.webhook_url.get_secret_value() and not self.webhook_secret.get_secret_value():
            raise ValueError("webhook_secret: empty while WEBHOOK_URL is set (every delivery is signed)")
        return self

    @property
    def webhooks_enabled(self) -> bool:
        """True when state changes write webhook events to the outbox (WEBHOOK_URL is set)."""
        return bool(self.webhook_url.get_secret_value())

    @model_validator(mode="after")
    def _stuck_after_heartbeats(self) -> Settings:
        if self.stuck_timeout_seconds < 3 * self.heartbeat_seconds:
            raise ValueError("stuck_timeout_seconds: shorter than 3 heartbeats")
        return self

    @property
    def formats(self) -> tuple[str, ...]:
        """The output formats as a tuple, in the order given."""
        return () if self.output_formats == "none" else tuple(self.output_formats.split(","))


def load_settings(env_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from the environment and the env file, or raise ``ConfigError``.

    ``env_file`` defaults to ``$TRANSCRIBER_ENV_FILE`` or ``./.env``.  A named file that
    does not exist is a configuration error; a missing default ``.env`` is fine.
    """
    named = env_file or os.environ.get(ENV_FILE_VARIABLE)
    if named and not Path(named).is_file():
        raise ConfigError(f"{ENV_FILE_VARIABLE}={named} does not exist: point it at your .env file")
    try:
        return Settings(_env_file=named or ".env", **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    message = str(first.get("msg", "invalid"))
    if not field and ":" in message:  # model-level check names its field in the message
        field = message.split(":", 1)[0].split()[-1]
    value = first.get("input")
    secret = field in Settings.model_fields and Settings.model_fields[field].annotation is SecretStr
    if secret or field in ("database_url", "celery_broker_url"):
        value = None  # a secret, or a URL that does not parse and so cannot be masked reliably: never echoed
    shown = "" if isinstance(value, dict) or value is None else f"={value}"
    accepts = _ACCEPTS.get(field, message)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    why = message.removeprefix("Value error, ") if field in _SAYS_WHY else ""  # our own reason, not pydantic's
    return f"{field.upper()}{shown} is invalid{f' ({why})' if why else ''}: expected {accepts}{more}"


# Fields whose validator's own words say what is wrong with the value (a regex that does not compile, ...).
_SAYS_WHY = {"filename_pattern"}
