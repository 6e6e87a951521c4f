"""What every service reads, and the groups of settings several services share.

Each service reads one class (its own module in this package) built from these: the base
(`ServiceSettings`: Redis, the database, the data folder, logging) plus the groups it takes part
in. A variable is declared once, in the class that owns it; `python -m shared.settings` lists
them all. Secrets are `SecretStr`, so that they never print in a repr, a log line or an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, Self, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

# The published 2ch fine-tune of the Russian dialog GPT-2 (355M); the worker's default model.
DEFAULT_MODEL = "BlackSamorez/rudialogpt3_medium_based_on_gpt2_2ch"
# The base model the fine-tune started from; the trainer's default.
DEFAULT_BASE_MODEL = "Grossmend/rudialogpt3_medium_based_on_gpt2"


@dataclass(frozen=True)
class CliOption:
    """Marks a setting that a command also takes as an option, under these names when they are not
    `--<field name>` (e.g. `CliOption("--lr")`, `CliOption("--samples/--no-samples")`); put it in
    the field's `Annotated[...]`. shared/settings/cli.py builds the options from the fields."""

    names: tuple[str, ...] = ()

    def __init__(self, *names: str) -> None:
        object.__setattr__(self, "names", names)


class ServiceSettings(BaseSettings):
    """Redis, the database, the data folder and logging: every service reads these."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    redis_url: str | None = Field(
        default=None, description="Celery broker and result backend. Unset: an embedded Redis is started."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of Postgres. Unset: an embedded Postgres is started."
    )
    embedded_redis_port: int = Field(default=6390, description="Port of the embedded Redis (make run).")
    data_dir: Path = Field(
        default=REPO_ROOT / "var", description="Where embedded servers, caches and the model store live."
    )
    log_level: str = Field(
        default="INFO",
        description="Logging level of the services; other libraries log only warnings and errors unless DEBUG.",
    )
    log_format: Literal["json", "console"] = Field(default="json", description="json: one object per line.")

    @property
    def required_redis_url(self) -> str:
        """REDIS_URL, for a service that cannot run without it: a clear error when unset."""
        if not self.redis_url:
            raise ValueError("REDIS_URL is not set: `make run` starts an embedded Redis, a service run alone needs it")
        return self.redis_url

    @property
    def required_database_url(self) -> str:
        """DATABASE_URL, for a service that cannot run without it: a clear error when unset."""
        if not self.database_url:
            raise ValueError(
                "DATABASE_URL is not set: `make run` starts an embedded PostgreSQL, a service run alone needs it"
            )
        return self.database_url

    def secrets(self) -> list[str]:
        """The values of this class's secret settings that are set (for the log formatter to mask)."""
        values = (getattr(self, name) for name in type(self).model_fields)
        return [
            value.get_secret_value() for value in values if isinstance(value, SecretStr) and value.get_secret_value()
        ]


class QueueSettings(ServiceSettings):
    """The generation queue's timing, the same for its callers (gateway, bot) and the workers."""

    task_soft_time_limit_s: int = Field(default=60, ge=1, description="Soft time limit of one generation.")
    task_time_limit_s: int = Field(default=90, ge=2, description="Hard time limit (the child is killed).")
    result_expires_s: int = Field(default=600, ge=60, description="Results are kept this long in Redis.")
    reply_timeout_s: float = Field(default=30.0, gt=0, description="How long a caller waits for a reply.")
    visibility_margin_s: int = Field(
        default=60, ge=1, description="Redis redelivers an unacked job this long after the hard time limit."
    )
    unacked_restore_interval_s: int = Field(
        default=10, ge=1, description="How often workers look for jobs a dead worker left unacknowledged."
    )
    worker_proc_alive_timeout_s: float = Field(
        default=300.0, gt=0, description="How long a worker child may take to load its model at start."
    )
    redis_eviction_policy_check: Literal["refuse", "warn"] = Field(
        default="refuse",
        description="Gateway and workers at start: a Redis whose maxmemory-policy is not noeviction (it may drop "
        "jobs and results) makes them `refuse` to run, or `warn` (log an error and run).",
    )

    @model_validator(mode="after")
    def _time_limits_are_ordered(self) -> Self:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("TASK_SOFT_TIME_LIMIT_S must be smaller than TASK_TIME_LIMIT_S")
        return self

    @property
    def visibility_timeout_s(self) -> int:
        """Redis redelivers an unacked task after this long; it must exceed the hard time limit,
        or a long task is handed to a second worker while the first still runs it."""
        return self.task_time_limit_s + self.visibility_margin_s


class ComputeSettings(ServiceSettings):
    """Torch's threads, for the services that run a model (worker, scraper's scorer, trainer)."""

    torch_threads: int = Field(
        default=0,
        ge=0,
        description="Torch's intra-op threads per process (a worker, the scraper's scorer, the trainer); 0 = "
        "torch's choice, the cores the process may use.",
    )


class ModelStoreSettings(ServiceSettings):
    """Where published model versions live (the trainer writes them, workers serve them)."""

    model_store_dir: Path | None = Field(
        default=None, description="Folder of published model versions; unset: DATA_DIR/models (a volume in k8s)."
    )

    @property
    def store_path(self) -> Path:
        """MODEL_STORE_DIR, or DATA_DIR/models."""
        return Path(self.model_store_dir or self.data_dir / "models").expanduser()


AnySettings = TypeVar("AnySettings", bound=BaseSettings)


@cache
def _read(cls: type[BaseSettings]) -> BaseSettings:
    return cls()


def get_settings(cls: type[AnySettings]) -> AnySettings:
    """The process's `cls` settings, read from the environment once (later calls return the same)."""
    settings = _read(cls)
    assert isinstance(settings, cls)
    return settings
