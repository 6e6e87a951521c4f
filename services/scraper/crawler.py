"""One crawl run: board listings -> threads worth fetching -> parsed, cleaned, stored, recorded.

A thread is fetched when the listing shows more than SCRAPER_MIN_REPLIES replies and something changed
since it was stored (reply count or last-hit time), unless `force`. Failures of one thread (HTTP,
network, malformed JSON, a statement the database refuses) are logged, counted and skipped; the
run goes on. When the database itself goes away the run stops with `DatabaseUnavailable`: what
was committed stays, what was not is fetched again by the next run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from services.scraper import metrics, store
from services.scraper.api_models import ListingThread, MalformedResponse, parse_thread
from services.scraper.client import DvachClient, FetchError
from services.scraper.store import DatabaseUnavailable, RunCounts
from shared.scrape_requests import wait_for_crawl_request
from shared.settings import ScraperSettings

log = logging.getLogger(__name__)


class CrawlLocked(RuntimeError):
    """Another crawl holds the crawl lock."""


@dataclass
class RunReport:
    run_id: int | None = None
    status: str = "running"
    counts: RunCounts = field(default_factory=RunCounts)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def error(self, kind: str, message: str) -> None:
        metrics.ERRORS.labels(kind=kind).inc()
        self.counts.errors += 1
        self.errors.append(f"{kind}: {message}")

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "status": self.status,
            **vars(self.counts),
            "seconds": round(self.seconds, 3),
            "error_messages": self.errors[:20],
        }


async def _db(function, *args, **kwargs):
    """Run a blocking store call in a worker thread; a lost server becomes DatabaseUnavailable."""
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except SQLAlchemyError as exc:
        if store.is_connection_problem(exc):
            raise DatabaseUnavailable(
                f"database unavailable: {type(exc.orig or exc).__name__}: {exc.orig or exc}"
            ) from exc
        raise


class Crawler:
    """Crawls SCRAPER_BOARDS into the database behind `engine` through `client`."""

    def __init__(self, engine: Engine, client: DvachClient, settings: ScraperSettings, *, progress: bool = False):
        self.engine = engine
        self.client = client
        self.settings = settings
        self.progress = progress

    async def run_once(self, *, force: bool = False) -> RunReport:
        """One recorded crawl of every board. Raises DatabaseUnavailable or CrawlLocked."""
        report = RunReport()
        started = time.monotonic()
        lock = store.crawl_lock(self.engine)
        try:
            got_lock = await _db(lock.__enter__)
        except DatabaseUnavailable:
            metrics.ERRORS.labels(kind="database").inc()
            raise
        try:
            if not got_lock:
                raise CrawlLocked("another crawl is running (the crawl lock is held)")
            report.run_id = await _db(store.start_run, self.engine, self.settings.scraper_boards)
            log.info("crawl started", extra={"run_id": report.run_id, "boards": list(self.settings.scraper_boards)})
            try:
                listed = [await self._crawl_board(board, report, force) for board in self.settings.scraper_boards]
            except DatabaseUnavailable as exc:
                report.status = "failed"
                report.error("database", str(exc))
                log.error(
                    "crawl stopped: the database is unavailable", extra={"run_id": report.run_id, "error": str(exc)}
                )
                await self._record_end(report, started)
                raise
            except (asyncio.CancelledError, KeyboardInterrupt):
                report.status = "interrupted"
                await self._record_end(report, started)
                raise
            except Exception as exc:
                report.status = "failed"
                report.error("internal", repr(exc))
                await self._record_end(report, started)
                raise
            # A run that could not list a single board got nothing: it failed.
            report.status = "finished" if any(listed) else "failed"
            await self._record_end(report, started)
            return report
        finally:
            await asyncio.to_thread(lock.__exit__, None, None, None)

    async def _record_end(self, report: RunReport, started: float) -> None:
        report.seconds = time.monotonic() - started
        metrics.RUNS.labels(status=report.status).inc()
        metrics.LAST_RUN.set(time.time())
        if report.status == "finished":
            metrics.LAST_SUCCESS.set(time.time())
        try:
            await _db(store.finish_run, self.engine, report.run_id, report.counts, report.errors, status=report.status)
        except DatabaseUnavailable as exc:
            # The row stays `running`; the next run marks it interrupted.
            log.error("could not record the end of the run", extra={"run_id": report.run_id, "error": str(exc)})
        log.info("crawl ended", extra=report.as_dict())

    async def _crawl_board(self, board: str, report: RunReport, force: bool) -> bool:
        """Crawl one board; False when its listing could not be had."""
        try:
            listing = await self.client.listing(board)
        except FetchError as exc:
            report.error(exc.kind, str(exc))
            log.warning("board listing failed", extra={"board": board, "error": str(exc)})
            return False
        if listing.rejected:
            report.error("malformed", f"/{board}/ listing: {listing.rejected} entries skipped")
        wanted = [entry for entry in listing.threads if entry.posts_count > self.settings.scraper_min_replies]
        report.counts.threads_seen += len(wanted)
        states = await _db(store.thread_states, self.engine, board, [entry.num for entry in wanted])
        await _db(store.mark_seen, self.engine, board, [entry.num for entry in listing.threads])
        todo = [entry for entry in wanted if force or entry.num not in states or not states[entry.num].unchanged(entry)]
        skipped = len(wanted) - len(todo)
        report.counts.threads_unchanged += skipped
        metrics.THREADS_UNCHANGED.labels(board=board, why="listing").inc(skipped)
        log.info(
            "board listed",
            extra={"board": board, "threads": len(listing.threads), "wanted": len(wanted), "to_fetch": len(todo)},
        )
        with tqdm(total=len(todo), desc=f"/{board}/", unit="thread", disable=not self.progress) as bar:
            try:
                async with asyncio.TaskGroup() as group:
                    for entry in todo:
                        task = group.create_task(self._crawl_thread(board, entry, states.get(entry.num), report))
                        task.add_done_callback(lambda _: bar.update())
            except BaseExceptionGroup as group_error:
                # The first failure cancelled the other threads; surface it as itself.
                lost = group_error.subgroup(DatabaseUnavailable)
                raise (lost or group_error).exceptions[0] from None
        return True

    async def _crawl_thread(
        self, board: str, entry: ListingThread, state: store.ThreadState | None, report: RunReport
    ) -> None:
        num = entry.num
        try:
            fetched = await self.client.thread(
                board, num, etag=state.etag if state else None, last_modified=state.last_modified if state else None
            )
        except FetchError as exc:
            report.counts.threads_failed += 1
            report.error(exc.kind, str(exc))
            log.warning("thread skipped", extra={"board": board, "thread_num": num, "error": str(exc)})
            return
        if fetched.status == "gone":
            metrics.THREADS_UNCHANGED.labels(board=board, why="gone").inc()
            log.info("thread gone", extra={"board": board, "thread_num": num})
            return
        if fetched.status == "not_modified":
            report.counts.threads_unchanged += 1
            metrics.THREADS_UNCHANGED.labels(board=board, why="not_modified").inc()
            await _db(store.mark_not_modified, self.engine, board, entry)
            return
        try:
            thread = await asyncio.to_thread(parse_thread, fetched.data, board, num)
        except MalformedResponse as exc:
            report.counts.threads_failed += 1
            report.error("malformed", f"/{board}/res/{num}.json: {exc}")
            log.warning("thread skipped: malformed", extra={"board": board, "thread_num": num, "error": str(exc)})
            return
        for reason in thread.rejected:
            report.error("post", f"/{board}/res/{num}.json: {reason}")
            log.warning("post skipped: malformed", extra={"board": board, "thread_num": num, "error": reason})
        try:
            saved = await _db(
                store.save_thread,
                self.engine,
                thread,
                entry,
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                max_turns=self.settings.scraper_max_dialog_turns,
                lowercase=self.settings.scraper_lowercase,
                drop_quotes=self.settings.scraper_drop_quotes,
            )
        except SQLAlchemyError as exc:  # the server is fine but refused this thread's data
            report.counts.threads_failed += 1
            report.error("store", f"/{board}/res/{num}.json: {type(exc).__name__}")
            log.error("thread not stored", extra={"board": board, "thread_num": num, "error": str(exc)[:500]})
            return
        report.counts.threads_fetched += 1
        report.counts.posts_added += saved.posts_added
        report.counts.dialogs_added += saved.dialogs_added
        metrics.THREADS_FETCHED.labels(board=board).inc()
        metrics.POSTS_ADDED.labels(board=board).inc(saved.posts_added)
        metrics.DIALOGS_ADDED.labels(board=board).inc(saved.dialogs_added)
        log.info(
            "thread stored",
            extra={
                "board": board,
                "thread_num": num,
                "posts": len(thread.posts),
                "posts_added": saved.posts_added,
                "dialogs_added": saved.dialogs_added,
            },
        )


async def run_forever(engine: Engine, settings: ScraperSettings, *, progress: bool = False) -> None:
    """Crawl every SCRAPER_INTERVAL_MIN until cancelled, or at once when the admin API asks
    (through Redis, when REDIS_URL is set); a failed run is logged and retried next time."""
    interval_s = settings.scraper_interval_min * 60
    async with DvachClient(settings) as client:
        crawler = Crawler(engine, client, settings, progress=progress)
        while True:
            started = time.monotonic()
            try:
                await crawler.run_once()
            except (DatabaseUnavailable, CrawlLocked) as exc:
                log.error("crawl did not complete", extra={"error": str(exc)})
            except Exception:
                log.exception("crawl failed")
            request = await wait_for_crawl_request(settings.redis_url, interval_s - (time.monotonic() - started))
            if request is not None:
                log.info("crawl requested through the admin API", extra={"request_id": request.get("request_id")})
