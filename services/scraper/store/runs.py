"""Runs (`scrape_runs`): one row per crawl, score or export, and the lock one crawl holds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from shared.db.models import ScrapeRun

runs_t = ScrapeRun.table()

# Any 64-bit number: one crawl at a time holds it (pg_try_advisory_lock).
CRAWL_LOCK_KEY = 0x2C4_5C_4A9E
MAX_ERROR_MESSAGES = 100


@contextmanager
def crawl_lock(engine: Engine) -> Iterator[bool]:
    """Hold the crawl lock for the block; yields False when another crawl holds it."""
    conn = engine.connect()
    got = False
    try:
        got = bool(conn.execute(select(func.pg_try_advisory_lock(CRAWL_LOCK_KEY))).scalar())
        conn.commit()
        yield got
    finally:
        # The server may be gone: the lock went with the session then.
        with suppress(Exception):
            if got:
                conn.execute(select(func.pg_advisory_unlock(CRAWL_LOCK_KEY)))
                conn.commit()
        with suppress(Exception):
            conn.close()


@dataclass
class RunCounts:
    threads_seen: int = 0
    threads_fetched: int = 0
    threads_unchanged: int = 0
    threads_failed: int = 0
    posts_added: int = 0
    dialogs_added: int = 0
    errors: int = 0


def start_run(engine: Engine, boards: Iterable[str], kind: str = "crawl") -> int:
    """Record a new run. A crawl (which holds the crawl lock) marks crawls still `running` as
    interrupted: their process died without recording its end."""
    with engine.begin() as conn:
        if kind == "crawl":
            conn.execute(
                update(runs_t)
                .where(runs_t.c.status == "running", runs_t.c.kind == "crawl")
                .values(status="interrupted", finished_at=func.now())
            )
        return conn.execute(
            pg_insert(runs_t).values(kind=kind, boards=list(boards), error_messages=[]).returning(runs_t.c.id)
        ).scalar_one()


def finish_run(
    engine: Engine, run_id: int, counts: RunCounts, messages: list[str], *, status: str, details: dict | None = None
) -> None:
    """Record how a run ended."""
    with engine.begin() as conn:
        conn.execute(
            update(runs_t)
            .where(runs_t.c.id == run_id)
            .values(
                status=status,
                finished_at=func.now(),
                error_messages=[m[:500] for m in messages[:MAX_ERROR_MESSAGES]],
                details=details,
                **vars(counts),
            )
        )


def recent_runs(engine: Engine, limit: int = 5) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(runs_t).order_by(runs_t.c.id.desc()).limit(limit)).mappings().all()
    return [dict(row) for row in rows]
