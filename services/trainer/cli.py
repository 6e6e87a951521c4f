"""`python -m services.trainer`: export, train, publish, activate and list model versions.

Every option of `train` is a field of `shared.settings.TrainOptions` and can also come from its
variable `TRAIN_<OPTION>` (what a Kubernetes Job sets; docs/settings.md lists them); the store,
database and Redis come from `TrainerSettings` (`MODEL_STORE_DIR`, `DATABASE_URL`, `REDIS_URL`).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from redis.exceptions import RedisError

from services.trainer.data import DialogSource
from shared.logging_setup import configure_from_settings
from shared.model_store import (
    ModelStore,
    VersionError,
    activate_version,
    check_name,
    get_version,
    list_versions,
    load_failures,
    publish_version,
    read_active,
    resolve_path,
)
from shared.settings import TrainerSettings, TrainOptions, get_settings
from shared.settings.cli import settings_options

if TYPE_CHECKING:
    import redis
    from sqlalchemy import Engine

    from services.trainer.training import RunResult

cli = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
log = logging.getLogger("services.trainer")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _settings() -> TrainerSettings:
    settings = get_settings(TrainerSettings)
    configure_from_settings(settings)
    return settings


def _engine(settings: TrainerSettings) -> Engine:
    from shared.db import make_engine

    if not settings.database_url:
        _fail("DATABASE_URL is not set (the model versions table and the dialogs live there)")
    return make_engine(settings.database_url)


def _redis(settings: TrainerSettings) -> redis.Redis:
    import redis

    if not settings.redis_url:
        _fail("REDIS_URL is not set (workers learn of the active version through it)")
    return redis.Redis.from_url(settings.redis_url, socket_timeout=5)


def _from_database(settings: TrainerSettings, quantile: float, limit: int | None) -> DialogSource:
    from services.trainer.data import read_database

    engine_check = _engine(settings)  # fails early with a clear message when unset
    engine_check.dispose()
    try:
        return read_database(settings.required_database_url, quantile, limit)
    except ValueError as exc:
        _fail(str(exc))


def _with_feedback(settings: TrainerSettings, source: DialogSource, threshold: int) -> DialogSource:
    """--feedback: the liked replies from the database added to the run's dialogs."""
    from sqlalchemy.exc import SQLAlchemyError

    from services.trainer.data import with_feedback

    _engine(settings).dispose()  # fails early with a clear message when DATABASE_URL is unset
    try:
        source = with_feedback(source, settings.required_database_url, threshold)
    except SQLAlchemyError as exc:
        _fail(f"--feedback: database unreachable: {exc}")
    typer.echo(f"feedback: {source.description['feedback']['replies']} liked replies added (threshold {threshold})")
    return source


def _check_publishable(settings: TrainerSettings, name: str) -> None:
    """Fail before hours of training when the name is taken or invalid."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        check_name(name)
        if ModelStore.from_settings(settings).exists(name):
            _fail(f"version {name!r} already exists in the store; publishing never overwrites")
        engine = _engine(settings)
        try:
            get_version(engine, name)
        except VersionError:
            return
        finally:
            engine.dispose()
        _fail(f"version {name!r} is already registered; publishing never overwrites")
    except VersionError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(f"database unreachable: {exc}")


def _generation_defaults(raw: str | None) -> dict:
    """--generation-defaults: a JSON object of GenerationParams fields, checked now, not at serving time."""
    if not raw:
        return {}
    from pydantic import ValidationError

    from shared.schemas import GenerationParams

    try:
        defaults = json.loads(raw)
        if not isinstance(defaults, dict):
            raise ValueError("not a JSON object")
        GenerationParams.model_validate(defaults)
    except (ValueError, ValidationError) as exc:
        _fail(f"--generation-defaults must be a JSON object of sampling parameters: {exc}")
    return defaults


def _publish(settings: TrainerSettings, result: RunResult, name: str, generation_defaults: dict | None = None) -> Path:
    store = ModelStore.from_settings(settings)
    engine = _engine(settings)
    meta = result.version_meta(name)
    meta.generation_defaults = generation_defaults or {}
    try:
        row = publish_version(engine, store, meta, result.model_dir, result.extra_files())
    except VersionError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    typer.echo(f"published {name} -> {row.path}")
    return Path(row.path)


def _activate(settings: TrainerSettings, name: str, check: bool) -> None:
    from services.trainer.checks import check_loads

    engine = _engine(settings)
    client = _redis(settings)
    try:
        row = get_version(engine, name)
        if check:
            check_loads(resolve_path(settings, name, row.path))
        active = activate_version(engine, client, name)
    except VersionError as exc:
        _fail(f"activation of {name!r} refused: {exc}")
    finally:
        engine.dispose()
        client.close()
    typer.echo(f"activated {active.name} (generation {active.generation}); workers switch before their next job")


@cli.command()
@settings_options(TrainOptions, "quantile", "limit")
def export(
    options: TrainOptions,
    out: Annotated[Path, typer.Argument(help="JSONL file to write (the dialog JSONL the scraper exports too).")],
) -> None:
    """Write the dialogs a `train --from-db` would use to a JSONL (to train on another machine)."""
    from services.trainer.data import write_jsonl

    source = _from_database(_settings(), options.quantile, options.limit)
    write_jsonl(source.dialogs, out)
    typer.echo(
        f"exported {len(source.dialogs)} dialogs to {out} ({json.dumps(source.description, ensure_ascii=False)})"
    )


def _check_train_options(settings: TrainerSettings, options: TrainOptions) -> None:
    """Options that do not go together, and a version name that is taken, fail before any work."""
    if options.activate and not options.publish:
        _fail("--activate needs --publish NAME")
    if options.resume and options.run_dir is None:
        _fail("--resume needs --run-dir of the run to continue")
    if not options.resume and bool(options.jsonl) == options.from_db:
        _fail("give exactly one data source: --jsonl FILE or --from-db")
    if options.publish:
        _check_publishable(settings, options.publish)


def _training_source(settings: TrainerSettings, options: TrainOptions) -> DialogSource:
    """The run's dialogs: the snapshot of the run being resumed, else the file or the database."""
    from services.trainer.data import read_jsonl
    from services.trainer.training import DATA_FILE, SOURCE_FILE

    if not options.resume:
        source = (
            read_jsonl(options.jsonl, options.limit)
            if options.jsonl
            else _from_database(settings, options.quantile, options.limit)
        )
        return _with_feedback(settings, source, options.feedback) if options.feedback else source
    assert options.run_dir is not None
    snapshot = options.run_dir / DATA_FILE
    if not snapshot.exists():
        _fail(f"{snapshot} not found: nothing to resume")
    source = read_jsonl(snapshot)
    described = options.run_dir / SOURCE_FILE
    selected = (
        json.loads(described.read_text()) if described.exists() else {"source": "snapshot", "path": str(snapshot)}
    )
    source.description = {**selected, "resumed": True}
    return source


@cli.command()
@settings_options(TrainOptions, *TrainOptions.model_fields)
def train(options: TrainOptions) -> None:
    """Fine-tune a model on dialogs; optionally publish (and activate) the result."""
    from services.trainer.training import run_training

    settings = _settings()
    defaults = _generation_defaults(options.generation_defaults)
    _check_train_options(settings, options)
    source = _training_source(settings, options)
    if len(source.dialogs) < 2:
        _fail(f"only {len(source.dialogs)} usable dialogs: need at least 2 (one is held out)")
    run_dir = options.run_dir or settings.runs_path / (
        datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{options.publish}" if options.publish else "")
    )
    result = run_training(options, source, run_dir, threads=settings.torch_threads, resume=options.resume)
    m = result.metrics
    typer.echo(
        f"run {run_dir}: eval loss {m['eval_loss_before']:.4f} -> {m['eval_loss_after']:.4f}, "
        f"perplexity {m['perplexity_before']:.2f} -> {m['perplexity_after']:.2f}, {m['steps']} steps"
    )
    if options.publish:
        _publish(settings, result, options.publish, defaults)
        if options.activate:
            _activate(settings, options.publish, check=True)


@cli.command("publish")
def publish_cmd(
    run_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="A finished training run.")],
    name: Annotated[str, typer.Argument(help="Version name (letters, digits, . _ -); never overwritten.")],
    generation_defaults: Annotated[
        str | None, typer.Option(help=TrainOptions.model_fields["generation_defaults"].description)
    ] = None,
) -> None:
    """Publish a finished run as a model version (store folder + registry row)."""
    from services.trainer.training import RunResult

    settings = _settings()
    defaults = _generation_defaults(generation_defaults)
    try:
        result = RunResult.load(run_dir)
    except FileNotFoundError as exc:
        _fail(str(exc))
    _publish(settings, result, name, defaults)


@cli.command("activate")
def activate_cmd(
    name: Annotated[str, typer.Argument(help="A published version.")],
    check: Annotated[
        bool, typer.Option("--check/--skip-check", help="Load the version and generate before activating.")
    ] = True,
) -> None:
    """Make NAME the version every worker serves (each switches before its next job)."""
    _activate(_settings(), name, check)


@cli.command("list")
def list_cmd(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Published versions, the active one, and versions workers refused to load."""
    settings = _settings()
    engine = _engine(settings)
    try:
        rows = list_versions(engine)
    finally:
        engine.dispose()
    announced, failures = None, {}
    if settings.redis_url:
        client = _redis(settings)
        try:
            announced, failures = read_active(client), load_failures(client)
        except (RedisError, OSError) as exc:  # the registry is still worth showing without Redis
            typer.echo(f"warning: Redis unreachable: {exc}", err=True)
        finally:
            client.close()
    items: list[dict[str, Any]] = [
        {
            "name": r.name,
            "active": r.is_active,
            "created_at": r.created_at.isoformat(timespec="seconds") if r.created_at else None,
            "activated_at": r.activated_at.isoformat(timespec="seconds") if r.activated_at else None,
            "base_model": r.base_model,
            "data_hash": r.data_hash,
            "eval_loss": (r.metrics or {}).get("eval_loss_after"),
            "perplexity": (r.metrics or {}).get("perplexity_after"),
            "path": r.path,
            "load_failure": failures.get(r.name),
        }
        for r in rows
    ]
    if as_json:
        typer.echo(
            json.dumps({"versions": items, "announced": announced.name if announced else None}, ensure_ascii=False)
        )
        return
    if not items:
        typer.echo("no published versions")
    for item in items:
        mark = "*" if item["active"] else " "
        ppl = f"{item['perplexity']:.2f}" if isinstance(item["perplexity"], (int, float)) else "-"
        data = str(item["data_hash"])[:12]
        line = f"{mark} {item['name']:<32} {item['created_at']}  ppl {ppl:>8}  data {data}  {item['path']}"
        if item["load_failure"]:
            line += f"  [refused by {item['load_failure']['worker']}: {item['load_failure']['error'][:80]}]"
        typer.echo(line)
    if announced is not None:
        typer.echo(f"workers are told to serve: {announced.name} (generation {announced.generation})")


def main() -> None:
    cli(prog_name="python -m services.trainer")
