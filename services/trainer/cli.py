"""`python -m services.trainer`: export, train, publish, activate and list model versions.

Every option of `train` can also come from an environment variable `TRAIN_<OPTION>` (what a
Kubernetes Job sets); the store, database and Redis come from the usual settings
(`MODEL_STORE_DIR`, `DATABASE_URL`, `REDIS_URL`).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import typer

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
from shared.settings import Settings, get_settings

cli = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
log = logging.getLogger("services.trainer")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _settings() -> Settings:
    settings = get_settings()
    configure_from_settings(settings)
    return settings


def _engine(settings: Settings):
    from shared.db import make_engine

    if not settings.database_url:
        _fail("DATABASE_URL is not set (the model versions table and the dialogs live there)")
    return make_engine(settings.database_url)


def _redis(settings: Settings):
    import redis

    if not settings.redis_url:
        _fail("REDIS_URL is not set (workers learn of the active version through it)")
    return redis.Redis.from_url(settings.redis_url, socket_timeout=5)


def _source(settings: Settings, jsonl: Path | None, from_db: bool, quantile: float | None, limit: int | None):
    from services.trainer.data import read_database, read_jsonl

    if bool(jsonl) == bool(from_db):
        _fail("give exactly one data source: --jsonl FILE or --from-db")
    if jsonl:
        return read_jsonl(jsonl, limit)
    engine_check = _engine(settings)  # fails early with a clear message when unset
    engine_check.dispose()
    return read_database(settings.database_url, settings.train_quantile if quantile is None else quantile, limit)


def _check_publishable(settings: Settings, name: str) -> None:
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


GENERATION_DEFAULTS_HELP = (
    'Sampling defaults the version is served with, as JSON (e.g. \'{"temperature": 0.9, "top_k": 40}\'); '
    "unset: the project's defaults."
)


def _publish(settings: Settings, result, name: str, generation_defaults: dict | None = None) -> Path:
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


def _activate(settings: Settings, name: str, check: bool) -> None:
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
def export(
    out: Path = typer.Argument(..., help="JSONL file to write (the scraper's format)."),
    quantile: float | None = typer.Option(
        None, min=0, max=0.999, help="Toxicity quantile (default TRAIN_QUANTILE; 0 = all dialogs)."
    ),
    limit: int | None = typer.Option(None, min=1, help="Keep at most this many (the most toxic)."),
) -> None:
    """Write the dialogs a `train --from-db` would use to a JSONL (to train on another machine)."""
    from services.trainer.data import write_jsonl

    settings = _settings()
    source = _source(settings, None, True, quantile, limit)
    write_jsonl(source.dialogs, out)
    typer.echo(
        f"exported {len(source.dialogs)} dialogs to {out} ({json.dumps(source.description, ensure_ascii=False)})"
    )


@cli.command()
def train(
    jsonl: Path | None = typer.Option(
        None, envvar="TRAIN_JSONL", exists=True, dir_okay=False, help="Exported dialogs (JSONL)."
    ),
    from_db: bool = typer.Option(False, "--from-db", envvar="TRAIN_FROM_DB", help="Read dialogs from the database."),
    quantile: float | None = typer.Option(
        None,
        envvar="TRAIN_QUANTILE",
        min=0,
        max=0.999,
        help="--from-db: keep toxicity at or above this quantile (0 = all).",
    ),
    limit: int | None = typer.Option(None, envvar="TRAIN_LIMIT", min=2, help="At most this many dialogs."),
    model: str | None = typer.Option(
        None, envvar="TRAIN_MODEL_NAME_OR_PATH", help="GPT-2-family causal LM: hub name or folder."
    ),
    run_dir: Path | None = typer.Option(
        None, envvar="TRAIN_RUN_DIR", help="Run folder (default TRAIN_RUNS_DIR/<timestamp>)."
    ),
    epochs: float = typer.Option(1.0, envvar="TRAIN_EPOCHS", min=0),
    max_steps: int = typer.Option(-1, envvar="TRAIN_MAX_STEPS", help="> 0: stop after this many optimizer steps."),
    batch_size: int = typer.Option(8, envvar="TRAIN_BATCH_SIZE", min=1, help="Per device."),
    eval_batch_size: int | None = typer.Option(None, envvar="TRAIN_EVAL_BATCH_SIZE", min=1),
    grad_accum: int = typer.Option(1, envvar="TRAIN_GRAD_ACCUM", min=1, help="Gradient accumulation steps."),
    lr: float = typer.Option(5e-5, envvar="TRAIN_LR", min=0, help="Peak learning rate (linear decay)."),
    warmup: float = typer.Option(0.0, envvar="TRAIN_WARMUP", min=0, help="< 1: ratio of steps; >= 1: steps."),
    weight_decay: float = typer.Option(0.0, envvar="TRAIN_WEIGHT_DECAY", min=0),
    max_length: int = typer.Option(
        512, envvar="TRAIN_MAX_LENGTH", min=16, help="Tokens per example (oldest turns dropped first)."
    ),
    max_turn_tokens: int = typer.Option(256, envvar="TRAIN_MAX_TURN_TOKENS", min=4),
    eval_fraction: float = typer.Option(0.05, envvar="TRAIN_EVAL_FRACTION", min=0.001, max=0.5),
    max_eval: int = typer.Option(1000, envvar="TRAIN_MAX_EVAL", min=1, help="At most this many held-out examples."),
    seed: int = typer.Option(42, envvar="TRAIN_SEED"),
    reply_only: bool = typer.Option(
        True, "--reply-only/--all-tokens", envvar="TRAIN_REPLY_ONLY", help="Loss on the reply's tokens only."
    ),
    fp16: bool = typer.Option(False, "--fp16", envvar="TRAIN_FP16", help="Mixed precision fp16 (GPU)."),
    bf16: bool = typer.Option(
        False, "--bf16", envvar="TRAIN_BF16", help="Mixed precision bf16 (Ampere+ GPU, recent CPUs)."
    ),
    gradient_checkpointing: bool = typer.Option(
        False, "--gradient-checkpointing", envvar="TRAIN_GRADIENT_CHECKPOINTING"
    ),
    logging_steps: int = typer.Option(10, envvar="TRAIN_LOGGING_STEPS", min=1),
    eval_steps: int | None = typer.Option(
        None, envvar="TRAIN_EVAL_STEPS", min=1, help="Evaluate every N steps (default: each epoch)."
    ),
    save_steps: int | None = typer.Option(
        None, envvar="TRAIN_SAVE_STEPS", min=1, help="Checkpoint every N steps (needed for --resume)."
    ),
    save_total_limit: int = typer.Option(2, envvar="TRAIN_SAVE_TOTAL_LIMIT", min=1),
    group_by_length: bool = typer.Option(
        False, "--group-by-length", envvar="TRAIN_GROUP_BY_LENGTH", help="Batch examples of similar length."
    ),
    resume: bool = typer.Option(
        False, "--resume", envvar="TRAIN_RESUME", help="Continue --run-dir from its last checkpoint and data snapshot."
    ),
    samples: bool = typer.Option(
        True, "--samples/--no-samples", envvar="TRAIN_SAMPLES", help="Sample replies for the report."
    ),
    publish: str | None = typer.Option(
        None, envvar="TRAIN_PUBLISH", help="Publish the result as this version name."
    ),
    activate: bool = typer.Option(
        False, "--activate", envvar="TRAIN_ACTIVATE", help="With --publish: make it the served version."
    ),
    generation_defaults: str | None = typer.Option(
        None, envvar="TRAIN_GENERATION_DEFAULTS", help=GENERATION_DEFAULTS_HELP
    ),
) -> None:
    """Fine-tune a model on dialogs; optionally publish (and activate) the result."""
    from services.trainer.data import read_jsonl
    from services.trainer.training import DATA_FILE, SOURCE_FILE, TrainConfig, run_training

    settings = _settings()
    defaults = _generation_defaults(generation_defaults)
    if activate and not publish:
        _fail("--activate needs --publish NAME")
    if publish:
        _check_publishable(settings, publish)
    if resume:
        if run_dir is None:
            _fail("--resume needs --run-dir of the run to continue")
        snapshot = run_dir / DATA_FILE
        if not snapshot.exists():
            _fail(f"{snapshot} not found: nothing to resume")
        source = read_jsonl(snapshot)
        described = run_dir / SOURCE_FILE
        source.description = {
            **(
                json.loads(described.read_text())
                if described.exists()
                else {"source": "snapshot", "path": str(snapshot)}
            ),
            "resumed": True,
        }
    else:
        source = _source(settings, jsonl, from_db, quantile, limit)
    if len(source.dialogs) < 2:
        _fail(f"only {len(source.dialogs)} usable dialogs: need at least 2 (one is held out)")
    if run_dir is None:
        runs = Path(settings.train_runs_dir or settings.data_dir / "training-runs")
        run_dir = runs / (datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{publish}" if publish else ""))
    config = TrainConfig(
        model=model or settings.train_model_name_or_path,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        grad_accum=grad_accum,
        learning_rate=lr,
        warmup=warmup,
        weight_decay=weight_decay,
        max_length=max_length,
        max_turn_tokens=max_turn_tokens,
        eval_fraction=eval_fraction,
        max_eval=max_eval,
        seed=seed,
        reply_only=reply_only,
        fp16=fp16,
        bf16=bf16,
        gradient_checkpointing=gradient_checkpointing,
        logging_steps=logging_steps,
        eval_steps=eval_steps,
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        group_by_length=group_by_length,
        threads=settings.torch_threads,
        samples=samples,
    )
    result = run_training(config, source, run_dir, resume=resume)
    m = result.metrics
    typer.echo(
        f"run {run_dir}: eval loss {m['eval_loss_before']:.4f} -> {m['eval_loss_after']:.4f}, "
        f"perplexity {m['perplexity_before']:.2f} -> {m['perplexity_after']:.2f}, {m['steps']} steps"
    )
    if publish:
        _publish(settings, result, publish, defaults)
        if activate:
            _activate(settings, publish, check=True)


@cli.command("publish")
def publish_cmd(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A finished training run."),
    name: str = typer.Argument(..., help="Version name (letters, digits, . _ -); never overwritten."),
    generation_defaults: str | None = typer.Option(None, help=GENERATION_DEFAULTS_HELP),
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
    name: str = typer.Argument(..., help="A published version."),
    check: bool = typer.Option(True, "--check/--skip-check", help="Load the version and generate before activating."),
) -> None:
    """Make NAME the version every worker serves (each switches before its next job)."""
    _activate(_settings(), name, check)


@cli.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
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
        except Exception as exc:  # the registry is still worth showing without Redis
            typer.echo(f"warning: Redis unreachable: {exc}", err=True)
        finally:
            client.close()
    items = [
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
        line = f"{mark} {item['name']:<32} {item['created_at']}  ppl {ppl:>8}  data {str(item['data_hash'])[:12]}  {item['path']}"
        if item["load_failure"]:
            line += f"  [refused by {item['load_failure']['worker']}: {item['load_failure']['error'][:80]}]"
        typer.echo(line)
    if announced is not None:
        typer.echo(f"workers are told to serve: {announced.name} (generation {announced.generation})")


def main() -> None:
    cli(prog_name="python -m services.trainer")
