"""Per-chat settings in Postgres (table `chat_settings`, shared with the gateway's admin API).

Reads are cached for BOT_SETTINGS_CACHE_S, so a change made through the admin API applies within
seconds and a busy group costs one query per few seconds, not one per message; the bot's own
commands update the cache at once. When the database cannot be reached, the last known settings
(or the defaults) are used and the bot keeps answering.

The same row holds the chat's state in Telegram (`CHAT_STATES`): `set_state` marks a chat inactive
or active again, `migrate` moves a group's settings to the supergroup it became and leaves the old
id as a pointer, `purge` deletes the chats past the retention (services/bot/chat_lifecycle.py
decides when).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from shared.db.models import BotReply, ChatRefusal, ChatSettings
from shared.schemas import TONES, Tone

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
    state: str = "active"
    state_changed_at: datetime | None = None
    migrated_to: int | None = None
    learn: bool = False
    tone: Tone = "normal"


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
        return ChatConfig(
            chat_id,
            float(row.reply_chance),
            bool(row.muted),
            int(row.cooldown_s),
            row.state,
            row.state_changed_at,
            row.migrated_to,
            bool(row.learn),
            row.tone if row.tone in TONES else "normal",
        )

    def forget(self, *chat_ids: int) -> None:
        """Drop cached settings (after a change this process made outside `update`)."""
        for chat_id in chat_ids:
            self._cache.pop(chat_id, None)
            self._registered.discard(chat_id)

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
        learn: bool | None = None,
        tone: Tone | None = None,
    ) -> ChatConfig:
        """Store the given fields (creating the row if needed) and return the chat's settings."""
        changes: dict[str, object] = {}
        if learn is not None:
            changes["learn"] = learn
        if reply_chance is not None:
            changes["reply_chance"] = reply_chance
        if muted is not None:
            changes["muted"] = muted
        if tone is not None:
            changes["tone"] = tone
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

    async def set_state(
        self, chat_id: int, state: str, reason: str, *, title: str | None = None, chat_type: str | None = None
    ) -> bool:
        """Mark the chat `state` ("active" or "inactive") for `reason` (creating its row if needed);
        True when that changed its state (a chat inactive already, or a migrated one, is left as it
        is). Raises SettingsUnavailable when the database cannot be reached."""
        values = {
            "chat_id": chat_id,
            "title": (title or "")[:256] or None,
            "chat_type": chat_type,
            "state": state,
            "state_reason": reason,
            "state_changed_at": func.now(),
        }
        base = insert(ChatSettings).values(**values)
        table = ChatSettings.__table__
        stmt = base.on_conflict_do_update(
            index_elements=[ChatSettings.chat_id],
            set_={
                "state": base.excluded.state,
                "state_reason": base.excluded.state_reason,
                "state_changed_at": base.excluded.state_changed_at,
                "title": func.coalesce(base.excluded.title, table.c.title),
                "chat_type": func.coalesce(base.excluded.chat_type, table.c.chat_type),
                "updated_at": func.now(),
            },
            where=(table.c.state != base.excluded.state) & (table.c.state != "migrated"),
        ).returning(ChatSettings)
        try:
            async with self.sessions() as session, session.begin():
                row = (await session.execute(stmt)).scalar_one_or_none()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("chat settings: could not store a chat's state", extra={"error": str(exc)})
            raise SettingsUnavailable(str(exc)) from exc
        self._cache.pop(chat_id, None)
        if row is None:
            return False
        self._registered.add(chat_id)
        self._cache[chat_id] = (time.monotonic(), self._config(row, chat_id))
        return True

    async def migrate(self, old_id: int, new_id: int, title: str | None) -> bool:
        """Move the group `old_id`'s settings to the supergroup `new_id` it became (they replace
        whatever the new id has), mark the old row `migrated` (a pointer to the new id) and the new
        one active. One transaction, under an advisory lock on the old id, so replicas and the two
        service messages plus the error that announce one migration move it once: True for the call
        that did. Raises SettingsUnavailable when the database cannot be reached."""
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": old_id})
                old = await session.scalar(select(ChatSettings).where(ChatSettings.chat_id == old_id))
                if old is not None and old.state == "migrated":
                    # Moved by another announcement: this process may have cached the new id's
                    # settings read before that move (the update carrying this announcement did).
                    self.forget(old_id, new_id)
                    return False
                source = self._config(old, old_id)
                moved = {
                    "reply_chance": source.reply_chance,
                    "muted": source.muted,
                    "cooldown_s": source.cooldown_s,
                    "learn": source.learn,
                    "tone": source.tone,
                    "state": "active",
                    "state_reason": "migrated",
                    "state_changed_at": func.now(),
                    "migrated_from": old_id,
                    "chat_type": "supergroup",
                    "updated_at": func.now(),
                }
                new_title = (title or (old.title if old is not None else None) or "")[:256] or None
                stmt = insert(ChatSettings).values(chat_id=new_id, title=new_title, **moved)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[ChatSettings.chat_id],
                    set_={**moved, "title": func.coalesce(stmt.excluded.title, ChatSettings.__table__.c.title)},
                )
                await session.execute(stmt)
                pointer = {
                    "state": "migrated",
                    "state_reason": "migrated",
                    "state_changed_at": func.now(),
                    "migrated_to": new_id,
                    "updated_at": func.now(),
                }
                stmt = insert(ChatSettings).values(chat_id=old_id, title=new_title, chat_type="group", **pointer)
                await session.execute(stmt.on_conflict_do_update(index_elements=[ChatSettings.chat_id], set_=pointer))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("chat settings: could not move a migrated group", extra={"error": str(exc)})
            raise SettingsUnavailable(str(exc)) from exc
        self.forget(old_id, new_id)
        return True

    async def delete(self, chat_id: int) -> bool:
        """Delete every row of the chat, in one transaction: its settings, the replies the bot sent
        there and the reactions on them (/forget, or a group not on the allow-list); True if it
        had settings. Raises SettingsUnavailable when the database cannot be reached."""
        try:
            async with self.sessions() as session, session.begin():
                # The group this supergroup was (its pointer row and the replies sent under its id).
                former = list(
                    (
                        await session.scalars(select(ChatSettings.chat_id).where(ChatSettings.migrated_to == chat_id))
                    ).all()
                )
                ids = [chat_id, *former]
                await session.execute(delete(BotReply).where(BotReply.chat_id.in_(ids)))  # reactions cascade
                deleted = await session.scalar(
                    delete(ChatSettings).where(ChatSettings.chat_id.in_(ids)).returning(ChatSettings.chat_id)
                )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("chat settings: could not delete a chat", extra={"error": str(exc)})
            raise SettingsUnavailable(str(exc)) from exc
        self.forget(*ids)
        return deleted is not None

    async def purge_records(self, before: datetime) -> tuple[int, int]:
        """Delete the reply records (with their text and reactions) and the allow-list refusals
        older than `before`, of every chat; how many of each."""
        async with self.sessions() as session, session.begin():
            replies = await session.execute(delete(BotReply).where(BotReply.created_at < before))
            refusals = await session.execute(delete(ChatRefusal).where(ChatRefusal.refused_at < before))
        return int(getattr(replies, "rowcount", 0) or 0), int(getattr(refusals, "rowcount", 0) or 0)

    async def purge(self, before: datetime) -> list[int]:
        """Delete the rows of chats inactive or migrated since before `before`; their ids."""
        stmt = (
            delete(ChatSettings)
            .where(ChatSettings.state.in_(("inactive", "migrated")), ChatSettings.state_changed_at < before)
            .returning(ChatSettings.chat_id)
        )
        async with self.sessions() as session, session.begin():
            chat_ids = list((await session.scalars(stmt)).all())
        self.forget(*chat_ids)
        return chat_ids
