"""One settings object for every service, read from the environment (and an optional `.env`).

Names follow DESIGN.md: `REDIS_URL`, `DATABASE_URL`, `MODEL_NAME_OR_PATH`, `INFERENCE_BACKEND`,
`TELEGRAM_BOT_TOKEN`, `TELEGRAM_API_URL`, `ADMIN_TOKEN`, `DVACH_BASE_URL`, plus the knobs below.
Secrets are `SecretStr` so that they never print in a repr, a log line or an error.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

# The published 2ch fine-tune of the Russian dialog GPT-2 (355M); the worker's default model.
DEFAULT_MODEL = "BlackSamorez/rudialogpt3_medium_based_on_gpt2_2ch"
# The base model the fine-tune started from; the trainer's default.
DEFAULT_BASE_MODEL = "Grossmend/rudialogpt3_medium_based_on_gpt2"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- infrastructure -------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None, description="Celery broker and result backend. Unset: an embedded Redis is started."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of Postgres. Unset: an embedded Postgres is started."
    )
    data_dir: Path = Field(
        default=REPO_ROOT / "var", description="Where embedded servers, caches and the model store live."
    )

    # --- model ------------------------------------------------------------------------------
    model_name_or_path: str = Field(default=DEFAULT_MODEL, description="Hub name or local folder of the model.")
    inference_backend: Literal["auto", "transformers", "ctranslate2"] = Field(
        default="auto", description="`auto` picks the fast int8 backend when it loads, else transformers."
    )
    demo_model_dir: Path = Field(
        default=REPO_ROOT / "var" / "demo-model",
        description="Where the bundled demo model is built; the fallback when the hub is unreachable.",
    )
    torch_threads: int = Field(
        default=0, ge=0, description="Intra-op threads per worker process; 0 = the cores the process may use."
    )
    max_turn_tokens: int = Field(default=256, ge=8, description="Longer turns are cut to this many tokens.")
    max_context_tokens: int = Field(default=768, ge=32, description="The prompt keeps at most this many tokens.")

    # --- queue and timeouts -----------------------------------------------------------------
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

    # --- gateway ------------------------------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    max_dialog_turns: int = Field(default=8, ge=1, description="Most turns a reply request may carry.")
    max_turn_chars: int = Field(default=4096, ge=1, description="Longest turn a request may carry (characters).")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Bigger request bodies get 413.")

    # --- secrets and external services ------------------------------------------------------
    telegram_bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    admin_token: SecretStr | None = None
    dvach_base_url: str = "https://2ch.hk"

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    @model_validator(mode="after")
    def _limits_are_consistent(self) -> "Settings":
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("TASK_SOFT_TIME_LIMIT_S must be smaller than TASK_TIME_LIMIT_S")
        return self

    @property
    def visibility_timeout_s(self) -> int:
        """Redis redelivers an unacked task after this long; it must exceed the hard time limit,
        or a long task is handed to a second worker while the first still runs it."""
        return self.task_time_limit_s + self.visibility_margin_s


@lru_cache
def get_settings() -> Settings:
    return Settings()
