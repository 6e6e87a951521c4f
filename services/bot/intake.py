"""What every update goes through first: counted, de-duplicated by update id, time-stamped; then
anything from a group not on the allow-list is dropped, the group told so once and left
(AllowListMiddleware); then a message from a chat the bot left is dropped (ChatStateMiddleware)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Chat, ChatMemberUpdated, TelegramObject, Update
from aiogram.types.update import UpdateTypeLookupError

from services.bot import metrics, texts
from services.bot.allowlist import AllowList
from services.bot.chat_lifecycle import ChatLifecycle
from services.bot.chat_settings import ChatSettingsRepo, SettingsUnavailable
from services.bot.dedupe import Claims
from services.bot.delivery import Delivery
from services.bot.handlers.lifecycle import in_chat
from services.bot.policy import GROUP_TYPES

log = logging.getLogger(__name__)


def chat_of(update: Update) -> Chat | None:
    """The chat an update comes from (a message, a membership change, a reaction, ...), if any."""
    try:
        chat = getattr(update.event, "chat", None)
    except UpdateTypeLookupError:
        return None
    return chat if isinstance(chat, Chat) else None


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


class AllowListMiddleware(BaseMiddleware):
    """Outer middleware of `dp.update`, after IntakeMiddleware and before anything that stores:
    an update from a group not on the allow-list (allowlist.py) goes no further. The group is told
    so once, left (leaveChat), and whatever it had from before is deleted; nothing of it is stored.
    While the list cannot be read (the database down at start), such updates are dropped only."""

    def __init__(self, allowlist: AllowList, lifecycle: ChatLifecycle, delivery: Delivery):
        self.allowlist = allowlist
        self.lifecycle = lifecycle
        self.delivery = delivery

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        chat = chat_of(event)
        if chat is None or chat.type not in GROUP_TYPES:
            return await handler(event, data)
        migrated_from = event.message.migrate_from_chat_id if event.message is not None else None
        allowed = await self.allowlist.allows(chat.id, migrated_from)
        if allowed:
            return await handler(event, data)
        metrics.SKIPS.labels(reason="not_allowed").inc()
        if allowed is not None:
            member = event.my_chat_member
            gone = isinstance(member, ChatMemberUpdated) and not in_chat(member.new_chat_member)
            await self._leave(data["bot"], chat, still_in=not gone)
        return UNHANDLED

    async def _leave(self, bot: Bot, chat: Chat, *, still_in: bool) -> None:
        if still_in:
            if await self.allowlist.claim_refusal(chat.id):
                await self.delivery.say(chat.id, chat.type, texts.NOT_ALLOWED.format(chat_id=chat.id), kind="notice")
            try:
                await bot.leave_chat(chat.id)
            except TelegramAPIError as exc:  # left already (a second update raced us), or kicked meanwhile
                log.info("leaveChat failed", extra={"chat_id": chat.id, "error": type(exc).__name__})
            else:
                metrics.CHATS_LEFT.inc()
                log.info("left a group not on the allow-list", extra={"chat_id": chat.id})
        # The notice's rate windows, and anything the chat had while it was allowed.
        with contextlib.suppress(SettingsUnavailable):
            await self.lifecycle.forget(chat.id)
