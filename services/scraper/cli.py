"""`python -m services.scraper COMMAND`: crawl, run, score, export, stats, bench, pairs.

Every command reads `ScraperSettings` from the environment; the options that override a setting
(`--boards`, `--model`, `--batch-size`, `--out`, `--quantile`) are made from its fields. Commands
that use the database take DATABASE_URL, or start an embedded Postgres under DATA_DIR/postgres
when it is unset, and bring the schema up to date first (Alembic). Results are printed as JSON on
stdout; logs (JSON lines) and progress bars go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from shared.embedded import backing_servers
from shared.logging_setup import configure_from_settings
from shared.settings import REPO_ROOT, ScraperSettings
from shared.settings.cli import settings_options

log = logging.getLogger("services.scraper")
T = TypeVar("T")

app = typer.Typer(
    help="2ch threads -> Postgres -> dialogs -> toxicity -> training set.", no_args_is_help=True, add_completion=False
)

DEFAULT_RECORDED = REPO_ROOT.parent / "shared" / "data" / "2ch"


def _print(result: dict) -> None:
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))


def _fail(message: str, code: int = 1) -> NoReturn:
    log.error(message)
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def open_database(settings: ScraperSettings) -> Iterator[Engine]:
    """An engine on DATABASE_URL (or an embedded Postgres), migrated to the latest schema."""
    from shared.db import make_engine

    with ExitStack() as stack:
        try:
            servers = stack.enter_context(backing_servers(settings, redis=False, migrate_configured=True))
        except SQLAlchemyError as exc:
            _fail(f"database unavailable: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}")
        assert servers.database_url is not None  # asked for (database=True): configured or embedded
        engine = make_engine(servers.database_url)
        stack.callback(engine.dispose)
        yield engine


@contextmanager
def recorded_run(engine: Engine, kind: str) -> Iterator[dict]:
    """Record a `score` or `export` run in scrape_runs; the block fills in its details."""
    from services.scraper import store

    details: dict = {}
    run_id = store.start_run(engine, [], kind)
    try:
        yield details
    except BaseException as exc:
        failure = [f"{type(exc).__name__}: {exc}"]
        store.finish_run(engine, run_id, store.RunCounts(errors=1), failure, status="failed", details=details)
        raise
    store.finish_run(engine, run_id, store.RunCounts(), [], status="finished", details=details)


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro`; SIGTERM cancels it like Ctrl-C does, so a run is recorded as interrupted."""

    async def main():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    return asyncio.run(main())


@app.command()
@settings_options(ScraperSettings, "scraper_boards")
def crawl(
    settings: ScraperSettings,
    once: Annotated[bool, typer.Option("--once", help="One crawl, then exit (without it: like `run`).")] = False,
    force: Annotated[bool, typer.Option(help="Fetch listed threads even when the listing shows no change.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per board.")] = True,
) -> None:
    """Crawl the boards into the database: new threads, new posts, new dialogs."""
    configure_from_settings(settings)
    if not once:
        return _run_forever(settings, progress)
    from services.scraper.client import DvachClient
    from services.scraper.crawler import Crawler, CrawlLocked
    from services.scraper.store import DatabaseUnavailable

    async def once_() -> dict:
        async with DvachClient(settings) as client:
            report = await Crawler(engine, client, settings, progress=progress).run_once(force=force)
            return report.as_dict()

    with open_database(settings) as engine:
        try:
            result = _run_async(once_())
        except DatabaseUnavailable as exc:
            _fail(f"{exc}; what was committed is kept, the next run finishes the work")
        except CrawlLocked as exc:
            _fail(str(exc))
        except (KeyboardInterrupt, asyncio.CancelledError):
            _fail("interrupted", code=130)
    _print(result)
    if result["status"] != "finished":
        raise typer.Exit(1)


@app.command()
@settings_options(ScraperSettings, "scraper_boards")
def run(settings: ScraperSettings, progress: Annotated[bool, typer.Option(help="Show progress bars.")] = False) -> None:
    """Crawl every SCRAPER_INTERVAL_MIN minutes and serve /metrics on SCRAPER_METRICS_PORT."""
    configure_from_settings(settings)
    _run_forever(settings, progress)


def _run_forever(settings: ScraperSettings, progress: bool) -> None:
    from services.scraper import metrics
    from services.scraper.crawler import run_forever

    if settings.scraper_metrics_port:
        metrics.serve(settings.scraper_metrics_host, settings.scraper_metrics_port)
        log.info("metrics served", extra={"port": settings.scraper_metrics_port})
    with open_database(settings) as engine:
        try:
            _run_async(run_forever(engine, settings, progress=progress))
        except (KeyboardInterrupt, asyncio.CancelledError):
            log.info("scraper stopped")


@app.command()
@settings_options(ScraperSettings, "toxicity_model", "toxicity_batch_size")
def score(
    settings: ScraperSettings,
    limit: Annotated[int | None, typer.Option(help="Score at most this many dialogs.")] = None,
    rescore: Annotated[bool, typer.Option(help="First forget scores given by other models.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Score the reply turn of every unscored dialog (resumable: batches are committed)."""
    from services.scraper import store
    from services.scraper.toxicity import score_dialogs
    from shared.toxicity import ToxicityScorer

    configure_from_settings(settings)
    name = settings.toxicity_model
    with open_database(settings) as engine:
        try:
            scorer = ToxicityScorer(
                name,
                label=settings.toxicity_label,
                max_tokens=settings.toxicity_max_tokens,
                torch_threads=settings.torch_threads,
            )
        except (OSError, ValueError) as exc:
            _fail(f"cannot load the toxicity model {name!r}: {exc}")
        with recorded_run(engine, "score") as details:
            cleared = store.clear_scores(engine, keep_model=scorer.name) if rescore else 0
            done = score_dialogs(
                engine, scorer, batch_size=settings.toxicity_batch_size, limit=limit, progress=progress
            )
            details.update(model=scorer.name, cleared=cleared, scored=done)
        _print({**details, "unscored_left": store.count_unscored(engine)})


@app.command()
@settings_options(ScraperSettings, "export_dir", "export_quantile")
def export(settings: ScraperSettings) -> None:
    """Write the dialogs at or above the toxicity quantile as JSONL and as a `datasets` dataset."""
    from services.scraper.export import NothingToExport, export_dataset

    configure_from_settings(settings)
    with open_database(settings) as engine:
        try:
            with recorded_run(engine, "export") as details:
                summary = export_dataset(engine, settings.export_path, settings.export_quantile)
                details.update(
                    {k: summary[k] for k in ("quantile", "threshold", "dialogs_scored", "dialogs_exported")},
                    out=summary["files"]["jsonl"],
                )
        except (NothingToExport, ValueError) as exc:
            _fail(str(exc))
    _print(summary)


@app.command()
@settings_options(ScraperSettings)
def stats(
    settings: ScraperSettings, runs: Annotated[int, typer.Option(help="How many recent runs to show.")] = 5
) -> None:
    """Counts, dialog lengths, reply-link resolution, score distribution and recent runs."""
    from services.scraper import store

    configure_from_settings(settings)
    with open_database(settings) as engine:
        result = store.database_stats(engine)
        result["scores"] = store.score_summary(engine)
        result["runs"] = store.recent_runs(engine, runs)
    _print(result)


def _cleaning(settings: ScraperSettings) -> dict[str, Any]:
    """How posts become dialog turns, as the crawler cleans them (for the offline reports)."""
    return {
        "max_turns": settings.scraper_max_dialog_turns,
        "lowercase": settings.scraper_lowercase,
        "drop_quotes": settings.scraper_drop_quotes,
    }


@app.command()
@settings_options(ScraperSettings)
def bench(
    settings: ScraperSettings,
    data_dir: Annotated[Path, typer.Argument(help="Folder of recorded 2ch JSON.")] = DEFAULT_RECORDED,
    rounds: Annotated[int, typer.Option(help="Passes over the data for the timing.")] = 5,
    per_file: Annotated[bool, typer.Option(help="Also show the figures of each file.")] = False,
) -> None:
    """Posts parsed per second, dialogs, their lengths and resolved reply links, on recorded JSON."""
    from services.scraper.bench import measure

    configure_from_settings(settings)
    try:
        result = measure(data_dir, rounds=rounds, **_cleaning(settings))
    except FileNotFoundError as exc:
        _fail(str(exc))
    if not per_file:
        result.pop("per_file")
    _print(result)


@app.command()
@settings_options(ScraperSettings)
def pairs(
    settings: ScraperSettings,
    data_dir: Annotated[Path, typer.Argument(help="Folder of recorded 2ch JSON.")] = DEFAULT_RECORDED,
    changes: Annotated[bool, typer.Option(help="Also list each thread's figures and the pairs that moved.")] = False,
) -> None:
    """Training pairs on recorded JSON by the current rules and by the replaced one (first link, whole post)."""
    from services.scraper.pairs_report import report

    configure_from_settings(settings)
    try:
        result = report(data_dir, **_cleaning(settings))
    except FileNotFoundError as exc:
        _fail(str(exc))
    if not changes:
        result.pop("per_thread")
    _print(result)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
