"""The bot's Prometheus metrics, served on BOT_METRICS_PORT at /metrics.

Label values are small fixed sets (kinds, reasons, status codes, method names): never user ids,
texts or anything derived from the token. The one exception is replies per chat, for the
dashboard: the first CHAT_LABELS_MAX chats get their own series, any further ones share "other",
so the number of series stays bounded however many chats the bot joins.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from shared.reactions import DISLIKES, LIKES

log = logging.getLogger(__name__)

UPDATES = Counter("dvach_bot_updates_total", "Updates received from Telegram, by type.", ["type"])
REPLIES_SENT = Counter("dvach_bot_replies_sent_total", "Messages the bot sent, by kind.", ["kind"])
CHAT_REPLIES = Counter("dvach_bot_chat_replies_total", "Replies sent, by chat (bounded: see module doc).", ["chat_id"])
CHAT_LABELS_MAX = 100
_labelled_chats: set[int] = set()


def count_chat_reply(chat_id: int) -> None:
    if chat_id in _labelled_chats or len(_labelled_chats) < CHAT_LABELS_MAX:
        _labelled_chats.add(chat_id)
        CHAT_REPLIES.labels(chat_id=str(chat_id)).inc()
    else:
        CHAT_REPLIES.labels(chat_id="other").inc()


SKIPS = Counter("dvach_bot_skips_total", "Messages not answered (or answers dropped), by reason.", ["reason"])
UPDATE_TO_REPLY = Histogram(
    "dvach_bot_update_to_reply_seconds",
    "Time from receiving an update to the reply being accepted by Telegram, by kind.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60),
)
TELEGRAM_ERRORS = Counter(
    "dvach_bot_telegram_errors_total",
    "Failed Bot API calls, by error code (HTTP status, or timeout / network / decode) and method.",
    ["code", "method"],
)
RATE_LIMIT_WAIT = Histogram(
    "dvach_bot_rate_limit_wait_seconds",
    "How long a reply waited for the per-chat, per-group and global send budget.",
    buckets=(0, 0.1, 0.5, 1, 2, 5, 10, 20, 40),
)
CHAT_MIGRATIONS = Counter(
    "dvach_bot_chat_migrations_total",
    "Groups moved to the id of the supergroup they became (settings, context, limits).",
)
CHAT_REMOVALS = Counter(
    "dvach_bot_chat_removals_total",
    "Chats that became inactive, by reason: kicked, left, blocked (private), forbidden (a 403 on send).",
    ["reason"],
)
REMOVAL_REASONS = ("kicked", "left", "blocked", "forbidden")
for _removal in REMOVAL_REASONS:
    CHAT_REMOVALS.labels(reason=_removal)
CHATS_PURGED = Counter(
    "dvach_bot_chats_purged_total", "Chats whose state the cleanup job deleted after BOT_RETENTION_DAYS."
)
RECORDS_PURGED = Counter(
    "dvach_bot_records_purged_total",
    "Rows the cleanup job deleted after BOT_RETENTION_DAYS, by table (bot_replies with their reactions, "
    "chat_refusals).",
    ["table"],
)
for _table in ("bot_replies", "chat_refusals"):
    RECORDS_PURGED.labels(table=_table)
REACTIONS = Counter(
    "dvach_bot_reactions_total",
    "Reactions put on (change=added) or taken off (change=removed) the bot's replies, by kind (the emoji, "
    "custom, paid) and verdict (like, dislike, other: shared/reactions.py).",
    ["kind", "verdict", "change"],
)


def count_reaction(kind: str, change: int) -> None:
    """Count `change` reactions of `kind` (negative: taken off)."""
    verdict = "like" if kind in LIKES else "dislike" if kind in DISLIKES else "other"
    REACTIONS.labels(kind=kind, verdict=verdict, change="added" if change > 0 else "removed").inc(abs(change))


CHATS_LEFT = Counter(
    "dvach_bot_chats_left_total", "Groups the bot left (leaveChat) because they are not on the allow-list."
)
MEMBERSHIP = Counter(
    "dvach_bot_membership_updates_total",
    "my_chat_member updates handled, by change: added, removed, blocked, unblocked, other.",
    ["change"],
)
IN_FLIGHT = Gauge("dvach_bot_replies_in_flight", "Replies being generated or waiting to be sent.")
# Registered in polling mode only (poll_lease.py): a webhook replica exports no such series.
POLLING = Gauge(
    "dvach_bot_polling", "1 while this replica holds the poll lease and polls; 0 standing by.", registry=None
)


_registered_late: set[str] = set()


def polling(active: bool) -> None:
    """This replica polls (True) or stands by (False)."""
    if "polling" not in _registered_late:
        REGISTRY.register(POLLING)
        _registered_late.add("polling")
    POLLING.set(1 if active else 0)


# Reasons a dashboard should see as 0 before the first one happens.
SKIP_REASONS = (
    "bot_sender",
    "chat_type",
    "no_text",
    "command",
    "muted",
    "chance",
    "cooldown",
    "queue_full",
    "rate_limited",
    "user_flood",
    "duplicate",
    "timeout",
    "failed",
    "backend_down",
    "telegram_error",
    "malformed_update",
    "unknown_update",
    "empty_reply",
    "inactive",
    "not_allowed",
    "reaction_not_on_reply",
)
for _reason in SKIP_REASONS:
    SKIPS.labels(reason=_reason)


def serve(host: str, port: int) -> None:
    """Start the /metrics HTTP server in a daemon thread (port 0: do nothing)."""
    if port:
        start_http_server(port, addr=host)
        log.info("metrics served", extra={"host": host, "port": port})
