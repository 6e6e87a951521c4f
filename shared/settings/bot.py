"""The Telegram bot's settings (`python -m services.bot`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.settings.base import QueueSettings


class BotSettings(QueueSettings):
    """The Bot API connection, polling or webhook, context, Telegram's limits and the bot's manners."""

    telegram_bot_token: SecretStr | None = Field(default=None, description="Bot token from @BotFather (secret).")
    telegram_api_url: str = Field(
        default="https://api.telegram.org", description="Bot API server (a local one in tests)."
    )
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
    bot_recent_replies: int = Field(
        default=5,
        ge=0,
        le=16,
        description="The bot's last replies per chat sent with each job (a candidate repeating one is rejected).",
    )
    bot_recent_replies_ttl_s: int = Field(
        default=3600, ge=60, description="How long the bot's replies count as recent in a chat."
    )
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
    bot_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="A chat the bot was removed from, blocked in, or that moved to a supergroup keeps its state "
        "(settings row, context, limits) this many days, then the cleanup job deletes it.",
    )
    bot_cleanup_interval_s: float = Field(
        default=3600.0, gt=0, description="How often the cleanup job looks for chats past the retention."
    )
    bot_allowed_chats: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(),
        description="Groups the bot may answer in, comma-separated chat ids, added to the admin API's allow-list; "
        "both empty: every group. In a group not listed it says so once and leaves. Private chats are always "
        "answered.",
    )
    bot_chat_info_cache_s: float = Field(
        default=600.0, ge=0, description="A group's slow mode delay (getChat) is re-read after this long."
    )
    bot_shutdown_grace_s: float = Field(default=10.0, ge=0, description="On stop, replies in flight get this long.")

    @field_validator("bot_allowed_chats", mode="before")
    @classmethod
    def _chat_ids(cls, value: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
        """`"-1001, -1002"` -> `(-1001, -1002)`; anything else than integers is refused."""
        parts = value.split(",") if isinstance(value, str) else list(value)
        try:
            return tuple(dict.fromkeys(int(str(part).strip()) for part in parts if str(part).strip()))
        except ValueError:
            raise ValueError("BOT_ALLOWED_CHATS: expected chat ids (integers) separated by commas") from None
