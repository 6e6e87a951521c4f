"""What every update goes through first: counted, de-duplicated by update id, time-stamped; then
a message from a chat the bot left is dropped (ChatStateMiddleware)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject, Update
from aiogram.types.update import UpdateTypeLookupError

from services.bot import metrics
from services.bot.chat_lifecycle import ChatLifecycle
from services.bot.chat_settings import ChatSettingsRepo
from services.bot.dedupe import Claims
from services.bot.policy import GROUP_TYPES


class IntakeMiddleware(BaseMiddleware):
    """Outer middleware of `dp.update`: puts `received_at` (monotonic seconds) into handler data."""

    def __init__(self, claims: Claims):
        self.claims = claims

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        received_at = time.monotonic()
        assert isinstance(event, Update)
        try:
            update_type = event.event_type
        except UpdateTypeLookupError:
            # A type newer than this aiogram (it has extra fields), or the bare id a malformed
            # update was reduced to (counted already when it was dropped).
            metrics.UPDATES.labels(type="unknown").inc()
            if event.model_extra:
                metrics.SKIPS.labels(reason="unknown_update").inc()
            return UNHANDLED
        metrics.UPDATES.labels(type=update_type).inc()
        if not await self.claims.claim_update(event.update_id):
            metrics.SKIPS.labels(reason="duplicate").inc()
            return UNHANDLED
        data["received_at"] = received_at
        return await handler(event, data)


class ChatStateMiddleware(BaseMiddleware):
    """Outer middleware of `dp.update`, after IntakeMiddleware: nothing is generated for an
    inactive chat (the bot was removed or blocked). A message sent before the chat became inactive
    (delivered late) is dropped and counted (`inactive`); one sent after proves the bot is back
    (Telegram delivers nothing from a chat the bot is not in), so the chat is active again."""

    def __init__(self, repo: ChatSettingsRepo, lifecycle: ChatLifecycle):
        self.repo = repo
        self.lifecycle = lifecycle

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        message = event.message
        if message is None or (message.chat.type not in GROUP_TYPES and message.chat.type != "private"):
            return await handler(event, data)
        config = await self.repo.get(message.chat.id)
        if config.state == "inactive":
            if config.state_changed_at is not None and message.date <= config.state_changed_at:
                metrics.SKIPS.labels(reason="inactive").inc()
                return UNHANDLED
            chat = message.chat
            await self.lifecycle.activate(chat.id, "message", title=chat.title, chat_type=chat.type)
        return await handler(event, data)
