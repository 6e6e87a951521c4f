"""Per-chat settings in Postgres (table `chat_settings`, shared with the gateway's admin API).

Reads are cached for BOT_SETTINGS_CACHE_S, so a change made through the admin API applies within
seconds and a busy group costs one query per few seconds, not one per message; the bot's own
commands update the cache at once. When the database cannot be reached, the last known settings
(or the defaults) are used and the bot keeps answering.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from shared.db.models import ChatSettings

log = logging.getLogger(__name__)

_COLUMNS = ChatSettings.__table__.c
# The table's own defaults are the bot's defaults (one source of truth).
DEFAULT_REPLY_CHANCE = float(_COLUMNS.reply_chance.default.arg)
DEFAULT_COOLDOWN_S = int(_COLUMNS.cooldown_s.default.arg)


@dataclass(frozen=True)
class ChatConfig:
    chat_id: int
    reply_chance: float = DEFAULT_REPLY_CHANCE
    muted: bool = False
    cooldown_s: int = DEFAULT_COOLDOWN_S


class SettingsUnavailable(Exception):
    """The database could not be reached to store a change."""


class ChatSettingsRepo:
    def __init__(self, engine: AsyncEngine, cache_s: float):
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.cache_s = cache_s
        self._cache: dict[int, tuple[float, ChatConfig]] = {}
        self._registered: set[int] = set()

    @staticmethod
    def _config(row: ChatSettings | None, chat_id: int) -> ChatConfig:
        if row is None:
            return ChatConfig(chat_id)
        return ChatConfig(chat_id, float(row.reply_chance), bool(row.muted), int(row.cooldown_s))

    async def get(self, chat_id: int) -> ChatConfig:
        """The chat's settings (the defaults for a chat never configured)."""
        cached = self._cache.get(chat_id)
        if cached and time.monotonic() - cached[0] < self.cache_s:
            return cached[1]
        try:
            async with self.sessions() as session:
                row = await session.scalar(select(ChatSettings).where(ChatSettings.chat_id == chat_id))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("chat settings: database unreachable, using last known", extra={"error": str(exc)})
            return cached[1] if cached else ChatConfig(chat_id)
        config = self._config(row, chat_id)
        self._cache[chat_id] = (time.monotonic(), config)
        return config

    async def register(self, chat_id: int, title: str | None, chat_type: str | None) -> None:
        """Make sure the chat has a row (so the admin API lists it); once per chat and process."""
        if chat_id in self._registered:
            return
        stmt = insert(ChatSettings).values(chat_id=chat_id, title=(title or "")[:256] or None, chat_type=chat_type)
        stmt = stmt.on_conflict_do_update(
            index_elements=[ChatSettings.chat_id],
            set_={"title": stmt.excluded.title, "chat_type": stmt.excluded.chat_type},
        )
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(stmt)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("chat settings: could not register a chat", extra={"error": str(exc)})
            return
        self._registered.add(chat_id)

    async def update(
        self,
        chat_id: int,
        *,
        title: str | None = None,
        chat_type: str | None = None,
        reply_chance: float | None = None,
        muted: bool | None = None,
    ) -> ChatConfig:
        """Store the given fields (creating the row if needed) and return the chat's settings."""
        changes: dict[str, object] = {}
        if reply_chance is not None:
            changes["reply_chance"] = reply_chance
        if muted is not None:
            changes["muted"] = muted
        values = {"chat_id": chat_id, "title": (title or "")[:256] or None, "chat_type": chat_type, **changes}
        inserted = insert(ChatSettings).values(**values)
        stmt = inserted.on_conflict_do_update(
            index_elements=[ChatSettings.chat_id],
            set_={
                **changes,
                "title": inserted.excluded.title,
                "chat_type": inserted.excluded.chat_type,
                "updated_at": func.now(),
            },
        ).returning(ChatSettings)
        try:
            async with self.sessions() as session, session.begin():
                row = (await session.execute(stmt)).scalar_one()
                config = self._config(row, chat_id)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("chat settings: could not store a change", extra={"error": str(exc)})
            raise SettingsUnavailable(str(exc)) from exc
        self._registered.add(chat_id)
        self._cache[chat_id] = (time.monotonic(), config)
        return config
