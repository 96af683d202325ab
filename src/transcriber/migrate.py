"""Bring a database to the newest schema with Alembic (``transcriber db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

import transcriber
from transcriber.db import make_engine


def migrations_folder() -> Path:
    """Alembic's scripts: ``transcriber/migrations`` when installed, ``alembic/`` at the root of a checkout.

    Found by path, not by importing ``transcriber.migrations``: ``alembic/`` is no package (an ``__init__.py``
    there is what ``python -m`` in the checkout imports instead of the Alembic library), and editable installs
    cannot import a package without one nested in a regular package.
    """
    package = Path(transcriber.__file__).resolve().parent
    installed, checkout = package / "migrations", package.parents[1] / "alembic"
    return installed if (installed / "env.py").is_file() else checkout


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_folder()))
    config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str) -> str | None:
    """Migrate to head; returns the revision the database is at."""
    command.upgrade(alembic_config(database_url), "head")
    engine = make_engine(database_url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
