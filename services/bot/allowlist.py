"""Where the bot answers: the allow-list of groups (BOT_ALLOWED_CHATS plus the `chat_allowlist`
table the admin API edits). Both empty: every group. Private chats are never checked: there a
person chose to talk to the bot, while anyone can add a bot to a group.

A group not listed is told so once (a `chat_refusals` row, so even across restarts and replicas)
and left with leaveChat; nothing of it is stored (intake.py drops its updates before any handler
runs, and whatever the chat had from before it was removed from the list is deleted). A listed
group that becomes a supergroup (a new id) stays listed: `follow_migration` lists the new id.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from shared.db.models import ChatAllowed, ChatRefusal

log = logging.getLogger(__name__)


class AllowList:
    def __init__(self, engine: AsyncEngine, configured: tuple[int, ...], cache_s: float):
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.configured = frozenset(configured)
        self.cache_s = cache_s
        self._cached: tuple[float, frozenset[int]] | None = None

    async def chat_ids(self) -> frozenset[int] | None:
        """The allowed group ids (empty: all groups); None when the table cannot be read and was
        never read (the caller then neither answers nor leaves)."""
        if self._cached and time.monotonic() - self._cached[0] < self.cache_s:
            return self._cached[1]
        try:
            async with self.sessions() as session:
                listed = frozenset((await session.scalars(select(ChatAllowed.chat_id))).all())
        except (SQLAlchemyError, OSError) as exc:
            log.warning("allow-list: database unreachable, using the last known list", extra={"error": str(exc)})
            return self._cached[1] if self._cached else (self.configured or None)
        ids = listed | self.configured
        self._cached = (time.monotonic(), ids)
        return ids

    async def allows(self, chat_id: int, migrated_from: int | None = None) -> bool | None:
        """Whether the group `chat_id` is allowed (None: cannot tell now); a supergroup announcing
        that it was the listed group `migrated_from` is (the migration then lists it)."""
        ids = await self.chat_ids()
        if ids is None:
            return None
        return not ids or chat_id in ids or (migrated_from is not None and migrated_from in ids)

    async def follow_migration(self, old_id: int, new_id: int) -> None:
        """A listed group became the supergroup `new_id` (a new chat id): list the new id too, so
        that the bot stays. Nothing to do when the list is empty or the group was not on it."""
        ids = await self.chat_ids()
        if not ids or old_id not in ids or new_id in ids:
            return
        stmt = insert(ChatAllowed).values(chat_id=new_id, note=f"supergroup of {old_id}")
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(stmt.on_conflict_do_nothing())
        except (SQLAlchemyError, OSError) as exc:
            log.warning("allow-list: could not list a migrated group's new id", extra={"error": str(exc)})
            return
        self._cached = None
        log.info("allow-list: the supergroup a listed group became is listed", extra={"chat_id": new_id})

    async def claim_refusal(self, chat_id: int) -> bool:
        """True the first time the bot is about to tell this group it is not allowed there."""
        stmt = insert(ChatRefusal).values(chat_id=chat_id).on_conflict_do_nothing().returning(ChatRefusal.chat_id)
        try:
            async with self.sessions() as session, session.begin():
                return (await session.scalar(stmt)) is not None
        except (SQLAlchemyError, OSError) as exc:
            log.warning("allow-list: could not store a refusal, staying silent", extra={"error": str(exc)})
            return False
