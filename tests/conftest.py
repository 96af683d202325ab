"""Shared fixtures: real Postgres (a template database cloned per test), SQLite, Redis.

Real services are required: when Postgres or Redis is unreachable the tests fail,
they never skip. ``.ci/run`` starts both before running the suite.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).parent))

from transcriber.db import make_engine, make_session_factory  # noqa: E402
from transcriber.migrate import upgrade_to_head  # noqa: E402

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
# One Redis database per pytest-xdist worker (gw0 -> 5, gw1 -> 6, ...; TEST_REDIS_URL's own number + the worker's):
# the fixture flushes it for each test, which must not empty the broker of a test running beside it.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_REDIS_BASE, _, _REDIS_DB = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/5").rpartition("/")
if not _REDIS_DB.isdigit():  # no database number given: 0
    _REDIS_BASE, _REDIS_DB = f"{_REDIS_BASE}/{_REDIS_DB}".rstrip("/"), "0"
REDIS_URL = f"{_REDIS_BASE}/{int(_REDIS_DB) + _WORKER}"
# Names carry the pid of the test run, so two runs on one server (a developer's and CI's) never drop each
# other's databases; leftovers of runs that died are dropped when their pid is gone.
RUN = os.getpid()
TEMPLATE_DB = f"transcriber_tpl_{RUN}"


def _run_alive(name: str) -> bool:
    try:
        pid = int(name.split("_")[2])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated Postgres database that each test clones (fast: no migration per test)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        names = conn.execute(
            text(
                "SELECT datname FROM pg_database WHERE datname LIKE 'transcriber_t%' OR datname LIKE 'transcriber_tpl%'"
            )
        ).scalars()
        for name in list(names):
            if not _run_alive(name):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {TEMPLATE_DB}"))
    upgrade_to_head(_pg_url(TEMPLATE_DB))
    yield TEMPLATE_DB
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = f"transcriber_t_{RUN}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE {pg_template}'))
    yield _pg_url(name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (like the Postgres template: no migration per test)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "transcriber.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "transcriber.db"
    for suffix in ("", "-wal", "-shm"):  # WAL mode: a checkpoint may not have folded everything in yet
        source = sqlite_template.with_name(sqlite_template.name + suffix)
        if source.exists():
            shutil.copyfile(source, target.with_name(target.name + suffix))
    return f"sqlite:///{target}"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The state machine's tests run on both databases."""
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url"))


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    """Recorded human speech: ``TRANSCRIBER_SHARED_AUDIO``, else ``shared/audio`` beside the checkout (as in CI).

    Never a path of one machine. When the variable is set only it counts: a wrong value fails, it does not fall back.
    """
    configured = os.environ.get("TRANSCRIBER_SHARED_AUDIO", "")
    folder = Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "audio"
    if not (folder / "jfk.flac").is_file():
        where = f"TRANSCRIBER_SHARED_AUDIO={configured}" if configured else "shared/ beside the checkout"
        pytest.fail(
            f"shared test audio not found: no {folder / 'jfk.flac'} ({where}); put a copy of shared/ beside the"
            " checkout or set TRANSCRIBER_SHARED_AUDIO=/path/to/shared/audio"
        )
    return folder
