"""Sending the bot's messages within Telegram's limits, each message answered at most once.

Budgets (Redis sliding windows, shared by all replicas): BOT_GLOBAL_PER_SECOND over all chats,
BOT_CHAT_PER_SECOND in one chat, BOT_GROUP_PER_MINUTE in one group. When a group's minute is used
up, a mention, reply, /ask or command waits for a slot up to BOT_MAX_SEND_WAIT_S (the chat keeps
seeing "typing"); a later answer would be out of context, so past that it is dropped and counted.
Random replies never wait for a group's minute budget and may only use it minus BOT_RANDOM_RESERVE,
so they give way to the replies people asked for; it is checked before a job is even queued.

A supergroup with slow mode gets one more window: one message per `slow_mode_delay` (plus
SLOW_MODE_MARGIN_S, since Telegram times the arrival, not our reservation). Random replies yield
first there too: they are not queued while the slot is taken and never wait for it.

Telegram's answers about the chat itself are acted on (chat_lifecycle.py): "group chat was
upgraded to a supergroup chat" moves the chat to its new id and the reply is sent there once;
a 403 (the bot was kicked, or blocked in a private chat) marks the chat inactive.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramMigrateToChat
from aiogram.types import Message, ReplyParameters

from services.bot import metrics
from services.bot.context import ChainCache, clean_turn
from services.bot.dedupe import Claims
from services.bot.policy import GROUP_TYPES
from services.bot.rate_limit import RateLimiter, Slot, Window
from shared.settings import BotSettings

if TYPE_CHECKING:
    from services.bot.chat_lifecycle import ChatLifecycle

log = logging.getLogger(__name__)

TELEGRAM_MAX_TEXT = 4096
RANDOM_MAX_WAIT_S = 2.0
SLOW_MODE_MARGIN_S = 1.0
# Control characters a random-ish sample can contain; Telegram shows them as boxes or refuses them.
_CONTROLS = re.compile("[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]")


def clean_reply(text: str) -> str:
    """A generated reply as it is sent: no control characters, at most 4096 characters."""
    return _CONTROLS.sub("", text).strip()[:TELEGRAM_MAX_TEXT]


def per_second_windows(settings: BotSettings, chat_id: int | str | None) -> list[Window]:
    """The per-second budgets a send to `chat_id` takes (only the global one without a chat)."""
    windows = [Window("global", settings.bot_global_per_second, 1.0)]
    if chat_id is not None:
        windows.append(Window(f"chat:{chat_id}", settings.bot_chat_per_second, 1.0))
    return windows


class Delivery:
    def __init__(
        self,
        bot: Bot,
        limiter: RateLimiter,
        claims: Claims,
        cache: ChainCache,
        settings: BotSettings,
        *,
        lifecycle: ChatLifecycle | None = None,
    ):
        self.bot = bot
        self.limiter = limiter
        self.claims = claims
        self.cache = cache
        self.settings = settings
        self.lifecycle = lifecycle

    async def windows(self, chat_id: int, chat_type: str, kind: str) -> list[Window]:
        s = self.settings
        windows = per_second_windows(s, chat_id)
        if chat_type in GROUP_TYPES:
            limit = s.bot_group_per_minute
            if kind == "random":
                limit = max(0, limit - s.bot_random_reserve)
            windows.append(Window(f"group:{chat_id}", limit, 60.0))
        if chat_type == "supergroup" and self.lifecycle is not None:  # only supergroups have slow mode
            delay = await self.lifecycle.slow_mode_delay(chat_id)
            if delay > 0:
                windows.append(Window(f"slow:{chat_id}", 1, delay + SLOW_MODE_MARGIN_S))
        return windows

    async def random_reply_fits(self, chat_id: int, chat_type: str) -> bool:
        """Whether the group's minute budget (less the reserve) and its slow mode have room for a
        random reply; the per-second windows free up while the reply is generated, so they are not
        asked here."""
        windows = [w for w in await self.windows(chat_id, chat_type, "random") if w.seconds > RANDOM_MAX_WAIT_S]
        return not windows or await self.limiter.try_acquire(windows, reserve=False) <= 0

    async def reserve(self, chat_id: int, chat_type: str, kind: str) -> Slot | None:
        """Take a send slot for a reply of `kind`, waiting as its kind allows; None: drop it.
        A random reply waits only for the per-second windows (a second or so), never for a
        group's minute budget."""
        max_wait = (
            min(RANDOM_MAX_WAIT_S, self.settings.bot_max_send_wait_s)
            if kind == "random"
            else self.settings.bot_max_send_wait_s
        )
        slot = await self.limiter.acquire(await self.windows(chat_id, chat_type, kind), max_wait)
        if slot is None:
            metrics.SKIPS.labels(reason="rate_limited").inc()
            log.info("reply dropped: send budget exhausted", extra={"chat_id": chat_id, "kind": kind})
            return None
        metrics.RATE_LIMIT_WAIT.observe(slot.waited)
        return slot

    async def _send(self, slot: Slot, **message: Any) -> Message:
        """sendMessage in a reserved slot; the slot counts from when Telegram has answered."""
        try:
            return await self.bot.send_message(**message)
        finally:
            await self.limiter.restamp(slot)

    async def send_reply(
        self, message: Message, text: str, kind: str, received_at: float | None, slot: Slot
    ) -> Message | None:
        """Reply to `message` in the reserved `slot`; None when it was answered already or
        Telegram refused. The sent reply is remembered as part of the chat's conversation."""
        chat_id = message.chat.id
        if not await self.claims.claim_reply(chat_id, message.message_id):
            metrics.SKIPS.labels(reason="duplicate").inc()
            log.info(
                "reply skipped: message already answered", extra={"chat_id": chat_id, "message_id": message.message_id}
            )
            return None
        sent: Message | None
        try:
            sent = await self._send(
                slot,
                chat_id=chat_id,
                text=text,
                message_thread_id=message.message_thread_id if message.is_topic_message else None,
                reply_parameters=ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True),
            )
        except TelegramMigrateToChat as exc:
            sent = await self._send_to_migrated(message, text, kind, exc.migrate_to_chat_id)
            if sent is None:
                return None
            chat_id = sent.chat.id
        except TelegramAPIError as exc:
            await self._refused(chat_id, message.chat.type, kind, exc)
            return None
        metrics.REPLIES_SENT.labels(kind=kind).inc()
        metrics.count_chat_reply(chat_id)
        if received_at is not None:
            metrics.UPDATE_TO_REPLY.labels(kind=kind).observe(time.monotonic() - received_at)
        await self.cache.remember(
            chat_id,
            sent.message_id,
            clean_turn(text, self.settings.bot_max_turn_chars),
            message.message_id if chat_id == message.chat.id else None,
        )
        return sent

    async def _refused(self, chat_id: int, chat_type: str, kind: str, exc: TelegramAPIError) -> None:
        metrics.SKIPS.labels(reason="telegram_error").inc()
        log.warning(
            "reply not sent: Telegram error",
            extra={"chat_id": chat_id, "kind": kind, "error": type(exc).__name__, "detail": exc.message},
        )
        if isinstance(exc, TelegramForbiddenError) and self.lifecycle is not None:
            # Kicked from the group or blocked by the user: nothing more goes to this chat.
            await self.lifecycle.deactivate(chat_id, "forbidden", chat_type=chat_type)

    async def _send_to_migrated(self, message: Message, text: str, kind: str, new_id: int) -> Message | None:
        """The group became the supergroup `new_id`: move the chat there and send the reply once,
        within the new chat's budget, as a plain message (the old message ids mean nothing there)."""
        old_id = message.chat.id
        if self.lifecycle is not None:
            await self.lifecycle.migrate(old_id, new_id, message.chat.title)
        log.info("reply redirected to the supergroup", extra={"chat_id": old_id, "new_chat_id": new_id})
        slot = await self.reserve(new_id, "supergroup", kind)
        if slot is None:
            return None
        try:
            return await self._send(slot, chat_id=new_id, text=text)
        except TelegramAPIError as exc:
            await self._refused(new_id, "supergroup", kind, exc)
            return None

    async def say(self, chat_id: int, chat_type: str, text: str, kind: str) -> Message | None:
        """Send `text` to a chat, not as a reply (the greeting), within the chat's budget."""
        slot = await self.reserve(chat_id, chat_type, kind)
        if slot is None:
            return None
        try:
            sent = await self._send(slot, chat_id=chat_id, text=text)
        except TelegramMigrateToChat as exc:
            if self.lifecycle is not None:
                await self.lifecycle.migrate(chat_id, exc.migrate_to_chat_id)
            return None
        except TelegramAPIError as exc:
            await self._refused(chat_id, chat_type, kind, exc)
            return None
        metrics.REPLIES_SENT.labels(kind=kind).inc()
        return sent

    async def answer(
        self, message: Message, text: str, kind: str = "command", received_at: float | None = None
    ) -> Message | None:
        """Reserve a slot and reply (commands' texts)."""
        slot = await self.reserve(message.chat.id, message.chat.type, kind)
        if slot is None:
            return None
        return await self.send_reply(message, text, kind, received_at, slot)
