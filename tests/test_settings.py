"""Settings: one declaration per variable, one class per service, command-line options made from
the fields, and the list `python -m shared.settings` prints."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import typer
from typer.testing import CliRunner

from shared.settings import (
    BotSettings,
    GatewaySettings,
    ScraperSettings,
    TrainerSettings,
    TrainOptions,
    WorkerSettings,
)
from shared.settings.cli import settings_options
from shared.settings.docs import GROUPS, all_env_names, env_name
from tests.processes import REPO


def test_every_variable_is_declared_once():
    declared = Counter(env_name(group.cls, name) for group in GROUPS for name in group.fields())
    assert [name for name, count in declared.items() if count > 1] == []
    # ...and every variable a service class reads is in one of the documented groups.
    assert set(declared) == all_env_names()


def test_each_service_reads_only_its_own_settings():
    services = {
        "gateway": GatewaySettings,
        "worker": WorkerSettings,
        "bot": BotSettings,
        "scraper": ScraperSettings,
        "trainer": TrainerSettings,
    }
    owned = {
        "gateway": {"admin_token", "gateway_port", "max_queue_depth"},
        "worker": {"model_name_or_path", "inference_lanes", "worker_concurrency"},
        "bot": {"telegram_bot_token", "bot_mode", "bot_context_turns"},
        "scraper": {"dvach_base_url", "scraper_boards", "toxicity_model"},
        "trainer": {"train_runs_dir"},
    }
    for service, cls in services.items():
        assert owned[service] <= set(cls.model_fields), service
        others = set().union(*(fields for other, fields in owned.items() if other != service))
        assert not others & set(cls.model_fields), f"{service} reads another service's settings"


def test_the_listing_prints_every_variable():
    out = subprocess.run(
        [sys.executable, "-m", "shared.settings"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    printed = {line.split("=", 1)[0] for line in out.splitlines() if line and not line.startswith("#")}
    assert printed == all_env_names()
    assert "WORKER_CONCURRENCY=1" in out.splitlines()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @settings_options(TrainOptions, "epochs", "learning_rate", "reply_only", "quantile")
    def train(options: TrainOptions, note: str = "none") -> None:
        typer.echo(f"{options.epochs} {options.learning_rate} {options.reply_only} {options.quantile} {note}")

    return app


def test_options_come_from_the_fields_and_win_over_the_environment(monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("TRAIN_EPOCHS", "3")
    monkeypatch.setenv("TRAIN_LR", "0.001")
    assert runner.invoke(_app(), []).output.split() == ["3.0", "0.001", "True", "0.75", "none"]
    given = runner.invoke(_app(), ["--epochs", "5", "--lr", "0.5", "--all-tokens", "--note", "x"])
    assert given.output.split() == ["5.0", "0.5", "False", "0.75", "x"]
    help_text = runner.invoke(_app(), ["--help"], env={"COLUMNS": "200"}).output
    assert "TRAIN_EPOCHS" in help_text and "--reply-only" in help_text and "--all-tokens" in help_text


def test_a_bad_option_or_variable_is_named_in_one_line(monkeypatch):
    runner = CliRunner()
    bad_option = runner.invoke(_app(), ["--quantile", "1"])
    assert bad_option.exit_code == 2 and "error: --quantile: Input should be less than 1" in bad_option.output
    monkeypatch.setenv("TRAIN_QUANTILE", "-1")
    bad_variable = runner.invoke(_app(), [])
    assert bad_variable.exit_code == 2 and "error: TRAIN_QUANTILE:" in bad_variable.output


def test_worker_concurrency_sizes_the_prefork_pool():
    from services.inference_worker.__main__ import pool_args

    settings = WorkerSettings(redis_url="redis://unused", worker_pool="prefork", worker_concurrency=3)
    assert pool_args(settings) == ["--pool", "prefork", "--concurrency", "3"]


def test_scraper_boards_are_parsed_and_checked():
    assert ScraperSettings(scraper_boards="b, po/").scraper_boards == ("b", "po")
    assert ScraperSettings().scraper_boards == ("b",)


def test_error_kinds_are_the_names_of_what_the_worker_raises():
    """The gateway tells a deadline from other failures by ErrorKind; the names must be the
    exception classes the worker (and Celery) raise, or the check silently never matches."""
    code = (
        "from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError\n"
        "from services.inference_worker.generation import EmptyGeneration\n"
        "from services.inference_worker.tasks import DeadlineExpired\n"
        "print(' '.join(sorted(c.__name__ for c in (DeadlineExpired, EmptyGeneration, SoftTimeLimitExceeded,"
        " TimeLimitExceeded, WorkerLostError))))"
    )
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://127.0.0.1:1/0", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    from shared.schemas import ErrorKind

    assert out.stdout.split() == sorted(kind.value for kind in ErrorKind)
