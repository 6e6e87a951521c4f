"""Ordinary messages: remember them for context, decide whether to answer, answer."""

from __future__ import annotations

import logging
import random

from aiogram import Bot, Router
from aiogram.types import Message

from services.bot import metrics, texts
from services.bot.chat_settings import ChatSettingsRepo
from services.bot.context import ChainCache, entities_of, message_turn, text_of
from services.bot.mentions import is_mentioned
from services.bot.policy import ChatPolicy, MessageFacts, decide, ignore_reason
from services.bot.responder import Responder
from shared.settings import BotSettings

log = logging.getLogger(__name__)

messages_router = Router(name="messages")


@messages_router.message()
async def message_handler(
    message: Message,
    *,
    bot: Bot,
    settings: BotSettings,
    responder: Responder,
    chat_settings: ChatSettingsRepo,
    chain_cache: ChainCache,
    received_at: float | None = None,
) -> None:
    """Answer a private message, a mention or a reply to the bot, or at random in a group."""
    me = await bot.me()
    chat = message.chat
    text = text_of(message)
    parent = message.reply_to_message
    max_chars = settings.bot_max_turn_chars
    turn = message_turn(message, me.id, me.username, max_chars) if text else ""
    parent_turn = message_turn(parent, me.id, me.username, max_chars) if parent else None
    if text:
        await chain_cache.remember(
            chat.id, message.message_id, turn, parent.message_id if parent else None, parent_turn
        )
    sender = message.from_user
    facts = MessageFacts(
        chat_type=chat.type,
        has_text=bool(text.strip()),
        from_bot=bool(sender and sender.is_bot),
        is_command=text.lstrip().startswith("/"),
        mentions_bot=bool(text) and is_mentioned(text, entities_of(message), me.id, me.username),
        replies_to_bot=bool(parent and parent.from_user and parent.from_user.id == me.id),
        is_automatic_forward=bool(message.is_automatic_forward),
    )
    if (reason := ignore_reason(facts)) is not None:  # before any database read
        metrics.SKIPS.labels(reason=reason).inc()
        return
    await chat_settings.register(chat.id, chat.title, chat.type)
    config = await chat_settings.get(chat.id)
    if config.state == "migrated" and config.migrated_to is not None:
        # A late message from a group that became a supergroup: the supergroup's settings apply,
        # and the reply goes there (delivery.py follows Telegram's migrate error).
        config = await chat_settings.get(config.migrated_to)
    decision = decide(facts, ChatPolicy(config.reply_chance, config.muted), random.random())
    if not decision.answer:
        metrics.SKIPS.labels(reason=decision.reason).inc()
        return
    assert decision.kind is not None
    dialog = await chain_cache.dialog(chat.id, turn, parent.message_id if parent else None, parent_turn)
    await responder.respond(
        message,
        decision.kind,
        dialog or [texts.EMPTY_MENTION_PROMPT],
        received_at,
        config.cooldown_s,
        learn=config.learn,
        tone=config.tone,
    )
