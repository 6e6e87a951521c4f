"""Reactions on the bot's replies: a person's (`message_reaction`) and the anonymous counts
(`message_reaction_count`), stored by reactions.py and counted in `dvach_bot_reactions_total`."""

from __future__ import annotations

import logging
from collections import Counter

from aiogram import Router
from aiogram.types import MessageReactionCountUpdated, MessageReactionUpdated
from sqlalchemy.exc import SQLAlchemyError

from services.bot import metrics
from services.bot.reactions import ReactionLog
from shared.reactions import reaction_kind

log = logging.getLogger(__name__)

reactions_router = Router(name="reactions")


async def _store(reactions: ReactionLog, chat_id: int, message_id: int, actor: str, kinds: dict[str, int]) -> None:
    try:
        delta = await reactions.set(chat_id, message_id, actor, kinds)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("reaction not stored: database unreachable", extra={"chat_id": chat_id, "error": str(exc)})
        return
    if delta is None:
        metrics.SKIPS.labels(reason="reaction_not_on_reply").inc()
        return
    for kind, change in delta.items():
        metrics.count_reaction(kind, change)


@reactions_router.message_reaction()
async def reaction_handler(update: MessageReactionUpdated, reactions: ReactionLog) -> None:
    """Someone changed their reactions on a message: their whole new set replaces the old."""
    if update.user is not None:
        actor = f"user:{update.user.id}"
    elif update.actor_chat is not None:
        actor = f"chat:{update.actor_chat.id}"  # an anonymous admin, or a channel
    else:
        actor = "anonymous"
    kinds = dict(Counter(reaction_kind(r) for r in update.new_reaction))
    await _store(reactions, update.chat.id, update.message_id, actor, kinds)


@reactions_router.message_reaction_count()
async def reaction_count_handler(update: MessageReactionCountUpdated, reactions: ReactionLog) -> None:
    """The counts of anonymous reactions on a message changed: they replace the previous counts."""
    kinds: dict[str, int] = {}
    for count in update.reactions:
        kind = reaction_kind(count.type)
        kinds[kind] = kinds.get(kind, 0) + count.total_count
    await _store(reactions, update.chat.id, update.message_id, "anonymous", kinds)
