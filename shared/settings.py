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
    embedded_redis_port: int = Field(default=6390, description="Port of the embedded Redis (make run).")
    redis_eviction_policy_check: Literal["refuse", "warn"] = Field(
        default="refuse",
        description="Gateway and workers at start: a Redis whose maxmemory-policy is not noeviction (it may drop "
        "jobs and results) makes them `refuse` to run, or `warn` (log an error and run).",
    )
    data_dir: Path = Field(
        default=REPO_ROOT / "var", description="Where embedded servers, caches and the model store live."
    )

    # --- model ------------------------------------------------------------------------------
    model_name_or_path: str = Field(default=DEFAULT_MODEL, description="Hub name or local folder of the model.")
    inference_backend: Literal["auto", "transformers", "onnxruntime", "ctranslate2"] = Field(
        default="auto",
        description="`auto` picks the first that loads of onnxruntime (int8), ctranslate2 (int8), transformers.",
    )
    demo_model_dir: Path | None = Field(
        default=None,  # filled from DATA_DIR by the validator below
        description="Where the bundled demo model is built (the fallback when the hub is unreachable); unset: DATA_DIR/demo-model.",
    )
    torch_threads: int = Field(
        default=0, ge=0, description="Intra-op threads per worker process; 0 = the cores the process may use."
    )
    max_turn_tokens: int = Field(default=256, ge=8, description="Longer turns are cut to this many tokens.")
    max_context_tokens: int = Field(default=768, ge=32, description="The prompt keeps at most this many tokens.")
    inference_lowercase_turns: bool = Field(
        default=True, description="Lower-case turns before the model sees them (every training example was)."
    )

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

    worker_metrics_port: int = Field(default=9101, ge=0, description="Worker's /metrics port (0: off).")

    # --- gateway ------------------------------------------------------------------------------
    gateway_host: str = Field(
        default="127.0.0.1", description="Address the gateway listens on (0.0.0.0 in containers)."
    )
    gateway_port: int = Field(default=8000, description="Port of the gateway.")
    max_dialog_turns: int = Field(default=8, ge=1, description="Most turns a reply request may carry.")
    max_turn_chars: int = Field(default=4096, ge=1, description="Longest turn a request may carry (characters).")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Bigger request bodies get 413.")
    max_queue_depth: int = Field(
        default=200, ge=1, description="Backpressure: with this many jobs waiting, new requests get 503 at once."
    )

    # --- secrets and external services ------------------------------------------------------
    telegram_bot_token: SecretStr | None = Field(default=None, description="Bot token from @BotFather (secret).")
    telegram_api_url: str = Field(
        default="https://api.telegram.org", description="Bot API server (a local one in tests)."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of /admin (secret); unset: admin off."
    )
    dvach_base_url: str = Field(default="https://2ch.hk", description="Base URL of the 2ch JSON API.")

    # --- scraper (services/scraper; docs/scraper.md) ---------------------------------------
    scraper_boards: str = Field(default="b", description="Boards to crawl, comma-separated (e.g. `b,po`).")
    scraper_min_replies: int = Field(
        default=20, ge=0, description="Only threads with more replies than this are fetched (the seed: 20)."
    )
    scraper_concurrency: int = Field(default=2, ge=1, le=32, description="Requests in flight at once.")
    scraper_delay_s: float = Field(
        default=1.0, ge=0, description="Polite pause between one request being sent and the next one starting."
    )
    scraper_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request.")
    scraper_max_retries: int = Field(
        default=4, ge=0, description="Retries of a request after a 429, a 5xx, a network error or a cut body."
    )
    scraper_backoff_s: float = Field(
        default=2.0, ge=0, description="First retry waits this long, then doubles (with jitter; Retry-After wins)."
    )
    scraper_backoff_max_s: float = Field(default=120.0, ge=0, description="Longest wait between two retries.")
    scraper_user_agent: str = Field(
        default="dvach-bot-scraper/0.1 (training-data crawler; polite: 1 request/s)",
        description="User-Agent sent to the site: says honestly what is asking.",
    )
    scraper_max_dialog_turns: int = Field(
        default=6, ge=2, description="Longest dialog built from a reply chain (turns, the reply included)."
    )
    scraper_lowercase: bool = Field(default=True, description="Lower-case dialog turns (as the seed did).")
    scraper_drop_quotes: bool = Field(
        default=False, description="Drop `>quoted` lines from posts (kept by default: greentext is the style)."
    )
    scraper_interval_min: float = Field(default=10.0, gt=0, description="`run`: minutes between two crawls.")
    scraper_metrics_host: str = Field(default="0.0.0.0", description="`run`: address of the /metrics server.")
    scraper_metrics_port: int = Field(default=9102, ge=0, description="`run`: port of /metrics (0: off).")
    toxicity_model: str = Field(
        default="sismetanin/rubert-toxic-pikabu-2ch",
        description="Any AutoModelForSequenceClassification (hub name or folder) scoring the reply turn.",
    )
    toxicity_label: str | None = Field(
        default=None,
        description="Name or index of the toxic class; unset: a class named toxic, else 1 - p(non-toxic), "
        "else class 1 of two.",
    )
    toxicity_batch_size: int = Field(default=32, ge=1, description="Dialogs scored per batch (and per commit).")
    toxicity_max_tokens: int = Field(default=256, ge=8, description="The reply turn is cut to this many tokens.")
    export_quantile: float = Field(
        default=0.75, ge=0, le=1, description="Export keeps dialogs at or above this toxicity quantile."
    )
    export_dir: Path | None = Field(default=None, description="Where `export` writes; unset: DATA_DIR/dataset.")
    # --- end scraper

    # --- bot (services/bot; docs/bot.md) --------------------------------------------------
    bot_mode: Literal["polling", "webhook"] = Field(
        default="polling", description="`polling`: one replica asks Telegram; `webhook`: Telegram posts to us."
    )
    bot_webhook_url: str | None = Field(
        default=None, description="Public HTTPS URL registered with setWebhook at start; unset: not registered."
    )
    bot_webhook_secret: SecretStr | None = Field(
        default=None, description="Telegram's secret token header (required in webhook mode; 1-256 of A-Za-z0-9_-)."
    )
    bot_webhook_host: str = Field(default="0.0.0.0", description="Address the webhook server listens on.")
    bot_webhook_port: int = Field(default=8081, ge=1, le=65535, description="Port of the webhook server.")
    bot_webhook_path: str = Field(default="/telegram/webhook", description="Path Telegram posts updates to.")
    bot_metrics_host: str = Field(default="0.0.0.0", description="Address of the bot's /metrics server.")
    bot_metrics_port: int = Field(default=9103, ge=0, le=65535, description="Port of the bot's /metrics (0: off).")
    bot_request_timeout_s: float = Field(default=20.0, gt=0, description="Timeout of one Bot API request.")
    bot_polling_timeout_s: int = Field(default=20, ge=1, le=50, description="Long-polling wait of getUpdates.")
    bot_poll_lease_ttl_s: float = Field(
        default=60.0,
        gt=0,
        description="Polling mode: replicas take turns through a Redis lease of this TTL, one polls; at least "
        "2 x (BOT_POLLING_TIMEOUT_S + 5).",
    )
    bot_max_concurrent_updates: int = Field(default=256, ge=1, description="Updates handled at once (polling).")
    bot_context_turns: int = Field(default=3, ge=1, le=8, description="Turns sent to the model, the trigger included.")
    bot_context_ttl_s: int = Field(default=6 * 3600, ge=60, description="How long recent messages are remembered.")
    bot_max_turn_chars: int = Field(
        default=1000, ge=16, description="Longer turns are cut (the model takes 256 tokens)."
    )
    bot_bulk_queue_limit: int = Field(
        default=20, ge=0, description="Random replies are skipped while more jobs than this wait in the queues."
    )
    bot_global_per_second: int = Field(
        default=30, ge=1, description="Messages per second over all chats (Telegram: ~30)."
    )
    bot_group_per_minute: int = Field(default=20, ge=1, description="Messages per minute in one group (Telegram: 20).")
    bot_chat_per_second: int = Field(default=1, ge=1, description="Messages per second in one chat (Telegram: ~1).")
    bot_random_reserve: int = Field(
        default=5, ge=0, description="Of a group's minute budget, this many are kept for mentions and replies."
    )
    bot_max_send_wait_s: float = Field(
        default=20.0, ge=0, description="A mention waits this long at most for the rate budget, then is dropped."
    )
    bot_max_retry_after_s: float = Field(
        default=30.0, ge=0, description="A 429 asking to wait longer than this is not retried (logged and counted)."
    )
    bot_user_replies_per_minute: int = Field(
        default=10, ge=0, description="Replies one user can trigger per minute (0: no limit); more are ignored."
    )
    bot_apology_interval_s: float = Field(
        default=300.0, ge=0, description="At most one apology per private chat in this many seconds."
    )
    bot_dedupe_ttl_s: int = Field(default=24 * 3600, ge=60, description="How long handled update ids are remembered.")
    bot_settings_cache_s: float = Field(default=5.0, ge=0, description="Chat settings are re-read after this long.")
    bot_shutdown_grace_s: float = Field(default=10.0, ge=0, description="On stop, replies in flight get this long.")
    # --- end bot

    # --- trainer and model versions (services/trainer, shared/model_store.py; docs/training.md)
    model_store_dir: Path | None = Field(
        default=None, description="Folder of published model versions; unset: DATA_DIR/models (a volume in k8s)."
    )
    model_version_db_check_s: float = Field(
        default=60.0, gt=0, description="Workers with no active version in Redis look in the database this often."
    )
    train_model_name_or_path: str = Field(
        default=DEFAULT_BASE_MODEL, description="Model the trainer fine-tunes (hub name or folder; `--model`)."
    )
    train_runs_dir: Path | None = Field(
        default=None, description="Where training runs (checkpoints, reports) go; unset: DATA_DIR/training-runs."
    )
    train_quantile: float = Field(
        default=0.75, ge=0, lt=1, description="Training from the DB keeps dialogs at or above this toxicity quantile."
    )
    # --- end trainer

    # --- inference (services/inference_worker; docs/inference.md) ----------------------------
    inference_threads: int = Field(
        default=0, ge=0, description="Cores a worker process uses; 0 = TORCH_THREADS if set, else its CPU affinity."
    )
    inference_lanes: int = Field(
        default=0,
        ge=0,
        description="Generations at once on one copy of the weights; 0 = the backend's best (onnxruntime 2, ctranslate2 one per core).",
    )
    inference_threads_per_lane: int = Field(
        default=0,
        ge=0,
        description="Threads of one generation; 0 = measured best: onnxruntime all the cores; ctranslate2 the cores divided among the lanes, all of them from 2048 wide.",
    )
    inference_max_batch: int = Field(default=8, ge=1, le=64, description="Most jobs batched on one lane.")
    inference_batch_wait_ms: float = Field(
        default=20.0,
        ge=0,
        le=1000,
        description="A batch starts once no job joined it for this long (a burst is arriving).",
    )
    inference_batch_max_wait_ms: float = Field(
        default=80.0, ge=0, le=5000, description="...and at the latest this long after its first job arrived."
    )
    inference_bulk_lanes: int = Field(
        default=0, ge=0, description="Lanes bulk jobs may hold at once; 0 = all but one (kept for interactive jobs)."
    )
    inference_slots: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Jobs a threads-pool worker takes from the queues at once; 0 = lanes x INFERENCE_MAX_BATCH.",
    )
    inference_quantization: Literal["int8", "float32"] = Field(
        default="int8", description="Weights of the fast backends (float32: for parity checks)."
    )
    inference_cache_dir: Path | None = Field(
        default=None, description="Converted models of read-only checkpoints; unset: DATA_DIR/converted-models."
    )
    worker_pool: Literal["auto", "prefork", "threads"] = Field(
        default="auto", description="Celery pool; auto = threads unless INFERENCE_BACKEND=transformers (prefork)."
    )
    # --- end inference

    log_level: str = Field(
        default="INFO",
        description="Logging level of the services; other libraries log only warnings and errors unless DEBUG.",
    )
    log_format: Literal["json", "console"] = Field(default="json", description="json: one object per line.")

    @model_validator(mode="after")
    def _limits_are_consistent(self) -> Settings:
        if self.demo_model_dir is None:
            self.demo_model_dir = self.data_dir / "demo-model"
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


def settings_table() -> str:
    """The settings as a Markdown table (environment name, default, meaning), for the README."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, Path):
            default = str(default.relative_to(REPO_ROOT)) if default.is_relative_to(REPO_ROOT) else str(default)
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
