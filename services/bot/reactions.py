"""Reactions on the bot's replies (`message_reaction` and `message_reaction_count` updates; Telegram
sends them only when listed in allowed_updates, which the reaction handlers make happen, and only
to a bot that is an admin of the group).

Each person's (or anonymous admin's, or channel's) current reactions on a reply are one
`reply_reactions` row; the anonymous ones Telegram only counts are the `anonymous` row. A change
replaces the actor's row and the reply's totals (`bot_replies.reactions`, `likes`, `dislikes`) are
updated in the same transaction, under the reply's row lock, so concurrent updates add up.
Reactions on messages that are not recorded replies (people's messages, command answers, replies
past the retention or forgotten) are not stored."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from shared.db.models import BotReply, ReplyReaction
from shared.reactions import likes_and_dislikes

log = logging.getLogger(__name__)


class ReactionLog:
    def __init__(self, engine: AsyncEngine):
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def set(self, chat_id: int, message_id: int, actor: str, kinds: dict[str, int]) -> dict[str, int] | None:
        """Make `kinds` ({kind: count}) the actor's reactions on the reply; the change per kind
        (new minus old), or None when the message is not a recorded reply."""
        async with self.sessions() as session, session.begin():
            reply = await session.scalar(
                select(BotReply).where(BotReply.chat_id == chat_id, BotReply.message_id == message_id).with_for_update()
            )
            if reply is None:
                return None
            key = (
                ReplyReaction.chat_id == chat_id,
                ReplyReaction.message_id == message_id,
                ReplyReaction.actor == actor,
            )
            old: dict[str, int] = dict(await session.scalar(select(ReplyReaction.kinds).where(*key)) or {})
            kinds = {kind: count for kind, count in kinds.items() if count > 0}
            if kinds:
                stmt = insert(ReplyReaction).values(chat_id=chat_id, message_id=message_id, actor=actor, kinds=kinds)
                await session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[ReplyReaction.chat_id, ReplyReaction.message_id, ReplyReaction.actor],
                        set_={"kinds": stmt.excluded.kinds, "updated_at": stmt.excluded.updated_at},
                    )
                )
            else:
                await session.execute(delete(ReplyReaction).where(*key))
            delta = {kind: kinds.get(kind, 0) - old.get(kind, 0) for kind in {*old, *kinds}}
            totals = dict(reply.reactions or {})
            for kind, change in delta.items():
                totals[kind] = totals.get(kind, 0) + change
            totals = {kind: count for kind, count in totals.items() if count > 0}
            reply.reactions = totals
            reply.likes, reply.dislikes = likes_and_dislikes(totals)
        return {kind: change for kind, change in delta.items() if change}
