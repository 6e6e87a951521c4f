"""Fixtures of the scraper tests: a fresh migrated database per test (cloned from a template made
once per session on the session's Postgres, tests/servers.py), a local 2ch stand-in, the recorded 2ch JSON (tests that
need it skip when ../shared/data/2ch is absent), and a client configuration without pauses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine

from services.scraper.client import DvachClient
from services.scraper.crawler import Crawler, RunReport
from shared.db import make_engine, migrate
from shared.settings import ScraperSettings
from tests import servers
from tests.scraper.dvach_server import DvachServer

RECORDED_DIR = Path(
    os.environ.get("DVACH_RECORDED_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "2ch")
)

# The recorded full threads, by board (see ../shared/data/SOURCES.md).
PO_THREADS = [
    "dvachbrowser3_8058183.json",
    "dvachbrowser3_8071880.json",
    "dvachbrowser3_8073454.json",
    "imageboard10_po_thread.json",
]
MOBI_CATALOG = "imageboard10_mobi_catalog.json"
MOBI_SNAPSHOT_1 = "imageboard10_mobi_thread.json"
MOBI_SNAPSHOT_2 = "imageboard10_mobi_thread_2.json"
PO_THREADS_LISTING = "imageboard10_threads.json"


@pytest.fixture(scope="session")
def recorded_dir() -> Path:
    if not (RECORDED_DIR / PO_THREADS[0]).exists():
        pytest.skip(f"recorded 2ch JSON not found in {RECORDED_DIR}")
    return RECORDED_DIR


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A migrated database that each test's database is cloned from (cloning is fast); its name."""
    url = servers.create_database("dvach_scraper_tmpl")
    migrate(url)
    yield urlsplit(url).path.lstrip("/")
    servers.drop_database(url)


def clone_database(template: str) -> str:
    """A fresh database with the template's (migrated) schema; returns its URL."""
    return servers.create_database("dvach_scraper", template=template)


drop_database = servers.drop_database


@pytest.fixture
def new_database(template_db: str) -> Iterator:
    """Factory of fresh migrated databases (dropped after the test); returns their URLs."""
    made: list[str] = []

    def make() -> str:
        made.append(clone_database(template_db))
        return made[-1]

    yield make
    for url in made:
        drop_database(url)


@pytest.fixture
def db_url(new_database) -> str:
    return new_database()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def dvach() -> Iterator[DvachServer]:
    server = DvachServer().start()
    yield server
    server.stop()


def serve_recorded(server: DvachServer, recorded: Path, *, mobi_snapshot: str | None = MOBI_SNAPSHOT_2) -> None:
    """/po/: the four recorded /po/ threads (a catalog made from them); /mobi/: the recorded
    catalog (its threads other than the recorded one answer 404, as deleted threads do)."""
    for name in PO_THREADS:
        server.serve_thread("po", recorded / name)
    server.boards["mobi"].catalog_file = recorded / MOBI_CATALOG
    if mobi_snapshot:
        server.serve_thread("mobi", recorded / mobi_snapshot)


def make_config(server: DvachServer, boards: tuple[str, ...] = ("po", "mobi"), **overrides) -> ScraperSettings:
    """The scraper's settings for tests: no pauses, quick retries, the real code otherwise.
    `overrides` name SCRAPER_* settings without the prefix (`delay_s=0.5`)."""
    values: dict[str, Any] = dict(
        boards=boards,
        min_replies=20,
        concurrency=2,
        delay_s=0.0,
        timeout_s=10.0,
        max_retries=3,
        backoff_s=0.01,
        backoff_max_s=0.05,
        user_agent="dvach-bot-scraper-test/1.0",
        max_dialog_turns=6,
        lowercase=True,
    )
    values.update(overrides)
    return ScraperSettings(dvach_base_url=server.url, **{f"scraper_{name}": value for name, value in values.items()})


async def crawl(engine: Engine, config: ScraperSettings, *, force: bool = False) -> RunReport:
    """One real crawl run through a fresh client."""
    async with DvachClient(config) as client:
        return await Crawler(engine, client, config).run_once(force=force)
