"""A chat's life: the group became a supergroup (service messages), the bot was added, removed or
blocked (`my_chat_member`). What each does to the chat's state is in chat_lifecycle.py."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.types import ChatMemberRestricted, ChatMemberUnion, ChatMemberUpdated, Message

from services.bot import metrics, texts
from services.bot.chat_lifecycle import ChatLifecycle
from services.bot.chat_settings import ChatSettingsRepo
from services.bot.dedupe import Claims
from services.bot.delivery import Delivery
from services.bot.policy import GROUP_TYPES

log = logging.getLogger(__name__)

lifecycle_router = Router(name="lifecycle")
IN_CHAT_STATUSES = frozenset({"creator", "administrator", "member"})
SEES_ALL_STATUSES = frozenset({"creator", "administrator"})  # admins see every message, privacy or not


def in_chat(member: ChatMemberUnion) -> bool:
    """Whether this status means the bot is in the chat (a restricted member still is)."""
    return member.status in IN_CHAT_STATUSES or (isinstance(member, ChatMemberRestricted) and member.is_member)


@lifecycle_router.message(F.migrate_to_chat_id)
async def migrated_to_handler(message: Message, lifecycle: ChatLifecycle) -> None:
    """In the old group: it became the supergroup `migrate_to_chat_id`."""
    assert message.migrate_to_chat_id is not None
    await lifecycle.migrate(message.chat.id, message.migrate_to_chat_id, message.chat.title)


@lifecycle_router.message(F.migrate_from_chat_id)
async def migrated_from_handler(message: Message, lifecycle: ChatLifecycle) -> None:
    """In the new supergroup: it was the group `migrate_from_chat_id`."""
    assert message.migrate_from_chat_id is not None
    await lifecycle.migrate(message.migrate_from_chat_id, message.chat.id, message.chat.title)


@lifecycle_router.my_chat_member()
async def membership_handler(
    update: ChatMemberUpdated,
    *,
    bot: Bot,
    lifecycle: ChatLifecycle,
    delivery: Delivery,
    claims: Claims,
    chat_settings: ChatSettingsRepo,
) -> None:
    """Added to a group: active, and one greeting. Removed, kicked, or blocked in a private chat:
    inactive. Unblocked: active again."""
    chat = update.chat
    was_in, is_in = in_chat(update.old_chat_member), in_chat(update.new_chat_member)
    private = chat.type == "private"
    if (chat.type not in GROUP_TYPES and not private) or was_in == is_in:
        metrics.MEMBERSHIP.labels(change="other").inc()  # a channel, or a promotion / restriction
        return
    if not is_in:
        reason = "blocked" if private else ("kicked" if update.new_chat_member.status == "kicked" else "left")
        await lifecycle.deactivate(chat.id, reason, title=chat.title, chat_type=chat.type)
        metrics.MEMBERSHIP.labels(change="blocked" if private else "removed").inc()
        return
    await lifecycle.activate(chat.id, "unblocked" if private else "added", title=chat.title, chat_type=chat.type)
    if not private and await claims.claim_greeting(chat.id):
        me = await bot.me()
        sees_all = bool(me.can_read_all_group_messages) or update.new_chat_member.status in SEES_ALL_STATUSES
        config = await chat_settings.get(chat.id)
        text = texts.GREETING.format(
            username=me.username or "bot",
            chance=config.reply_chance,
            privacy=texts.GREETING_SEES_ALL if sees_all else texts.GREETING_PRIVACY_ON,
        )
        await delivery.say(chat.id, chat.type, text, kind="greeting")
        log.info("greeted a group", extra={"chat_id": chat.id, "sees_all_messages": sees_all})
    metrics.MEMBERSHIP.labels(change="unblocked" if private else "added").inc()
