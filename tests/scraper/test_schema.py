"""The migration creates exactly the scraper tables the models describe; one crawl at a time."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.scraper import store
from services.scraper.crawler import CrawlLocked
from shared.db.models import Base
from tests.scraper.conftest import crawl, make_config

SCRAPER_TABLES = {"threads", "posts", "dialogs", "scrape_runs"}


def _tables_named(diff) -> set[str]:
    found = set()
    stack = [diff]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, str) and item in SCRAPER_TABLES:
            found.add(item)
        elif hasattr(item, "table") and getattr(item.table, "name", None) in SCRAPER_TABLES:
            found.add(item.table.name)
        elif getattr(item, "name", None) in SCRAPER_TABLES:
            found.add(item.name)
    return found


def test_migration_matches_the_models(engine):
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diffs if _tables_named(d)] == []


async def test_a_second_crawl_waits_for_no_one_it_stops(engine, dvach):
    with store.crawl_lock(engine) as got:
        assert got
        with pytest.raises(CrawlLocked):
            await crawl(engine, make_config(dvach, boards=("po",)))
    report = await crawl(engine, make_config(dvach, boards=("po",)))  # free again: runs (the board is empty)
    assert report.run_id is not None
