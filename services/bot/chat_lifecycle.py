"""A chat's life in Telegram: upgraded to a supergroup, the bot removed or blocked, slow mode, retention.

- **Migration**: a group that becomes a supergroup gets a new id; the old one answers 400 "group
  chat was upgraded to a supergroup chat" with `migrate_to_chat_id`, and service messages carry
  `migrate_to_chat_id` / `migrate_from_chat_id`. Whichever comes first, `migrate` moves the
  settings row (chat_settings.py), the context cache, the rate-limit windows, the cooldown, the
  reply claims and the greeting claim to the new id, once (later announcements are no-ops).
- **Removal**: kicked, left, or blocked in a private chat (a `my_chat_member` update, or a 403 on
  send): `deactivate` marks the chat inactive; nothing is generated for it until the bot is back.
- **Retention**: `purge` deletes the reply records (text, reactions) and allow-list refusals older
  than BOT_RETENTION_DAYS, and the state of chats inactive (or migrated away) for that long: their
  row and every Redis key of theirs; `run_cleanup` does it periodically. `forget` deletes all of a
  chat's at once (/forget).
- **Slow mode**: `slow_mode_delay` reads a supergroup's `slow_mode_delay` with getChat, cached in
  Redis for BOT_CHAT_INFO_CACHE_S; delivery.py keeps the chat's sends at least that far apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramMigrateToChat
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from services.bot import metrics
from services.bot.allowlist import AllowList
from services.bot.chat_settings import ChatSettingsRepo, SettingsUnavailable
from services.bot.context import ChainCache
from services.bot.dedupe import Claims
from services.bot.recent_replies import recent_key
from services.bot.responder import cooldown_key
from shared.settings import BotSettings

log = logging.getLogger(__name__)

# The rate-limit windows kept per chat (delivery.py names them `<kind>:<chat id>`).
CHAT_WINDOW_KINDS = ("chat", "group", "slow")
# When getChat fails, assume no slow mode and ask again after this long.
CHAT_INFO_RETRY_S = 60

# Move one key to another name, keeping its TTL. If the target exists already: sorted sets (rate
# windows) are merged, anything else keeps the target's value; the source goes either way.
_MOVE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return 1
end
if redis.call('TYPE', KEYS[1]).ok == 'zset' and redis.call('TYPE', KEYS[2]).ok == 'zset' then
  local ttl = math.max(redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]))
  redis.call('ZUNIONSTORE', KEYS[2], 2, KEYS[2], KEYS[1], 'AGGREGATE', 'MAX')
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
redis.call('DEL', KEYS[1])
return 1
"""


class ChatLifecycle:
    def __init__(
        self,
        bot: Bot,
        repo: ChatSettingsRepo,
        redis: aioredis.Redis,
        *,
        prefix: str,
        limiter_prefix: str,
        cache: ChainCache,
        claims: Claims,
        settings: BotSettings,
        allowlist: AllowList | None = None,
    ):
        self.bot = bot
        self.repo = repo
        self.redis = redis
        self.prefix = prefix
        self.limiter_prefix = limiter_prefix
        self.cache = cache
        self.claims = claims
        self.settings = settings
        self.allowlist = allowlist
        self._move = redis.register_script(_MOVE_SCRIPT)
        self._lookups: dict[int, asyncio.Future[int]] = {}  # getChat in flight, per chat

    # --- the chat's Redis keys ------------------------------------------------------------------
    def chat_info_key(self, chat_id: int) -> str:
        return f"{self.prefix}:chatinfo:{chat_id}"

    def _exact_keys(self, chat_id: int, *, info: bool = True) -> list[str]:
        """Every key of a chat whose name is known (the per-message ones are found by pattern)."""
        keys = [cooldown_key(self.prefix, chat_id), self.claims.greeting_key(chat_id), recent_key(self.prefix, chat_id)]
        if info:
            keys.append(self.chat_info_key(chat_id))
        for kind in CHAT_WINDOW_KINDS:
            window = f"{self.limiter_prefix}:{kind}:{chat_id}"
            keys += [window, f"{window}:block"]
        return keys

    def _patterns(self, chat_id: int) -> list[str]:
        return [self.cache.chat_pattern(chat_id), self.claims.reply_pattern(chat_id)]

    async def _scan(self, pattern: str) -> list[bytes]:
        return [key async for key in self.redis.scan_iter(match=pattern, count=500)]

    async def _move_keys(self, old_id: int, new_id: int) -> int:
        """Rename every key of `old_id` to the same name under `new_id`; how many moved."""
        pairs = list(zip(self._exact_keys(old_id, info=False), self._exact_keys(new_id, info=False), strict=True))
        for pattern, new_pattern in zip(self._patterns(old_id), self._patterns(new_id), strict=True):
            old_stem, new_stem = pattern[:-1], new_pattern[:-1]
            for key in await self._scan(pattern):
                name = key.decode()
                pairs.append((name, new_stem + name[len(old_stem) :]))
        moved = 0
        for old, new in pairs:
            moved += int(await self._move(keys=[old, new]))
        await self.redis.delete(self.chat_info_key(old_id))  # the supergroup's slow mode is read afresh
        return moved

    async def _delete_keys(self, chat_id: int) -> int:
        keys: list[str | bytes] = list(self._exact_keys(chat_id))
        for pattern in self._patterns(chat_id):
            keys += await self._scan(pattern)
        deleted = 0
        for start in range(0, len(keys), 500):
            deleted += await self.redis.delete(*keys[start : start + 500])
        return deleted

    # --- migration --------------------------------------------------------------------------------
    async def migrate(self, old_id: int, new_id: int, title: str | None = None) -> bool:
        """Move everything `old_id` has to `new_id` (idempotent); True for the call that moved it."""
        if old_id == new_id:
            return False
        if self.allowlist is not None:
            await self.allowlist.follow_migration(old_id, new_id)
        try:
            moved = await self.repo.migrate(old_id, new_id, title)
        except SettingsUnavailable:
            moved = False  # the next announcement (or error) tries again; Redis still moves now
        try:
            keys = await self._move_keys(old_id, new_id)
            await self.redis.set(self.claims.greeting_key(new_id), "1", ex=self.settings.bot_dedupe_ttl_s)
        except (RedisError, OSError) as exc:
            log.warning("migration: could not move the chat's Redis keys", extra={"error": str(exc)})
            keys = 0
        if moved:
            metrics.CHAT_MIGRATIONS.inc()
            log.info(
                "group migrated to a supergroup",
                extra={"chat_id": old_id, "new_chat_id": new_id, "redis_keys_moved": keys},
            )
        return moved

    # --- membership -------------------------------------------------------------------------------
    async def deactivate(
        self, chat_id: int, reason: str, *, title: str | None = None, chat_type: str | None = None
    ) -> bool:
        """The bot is out of the chat (`reason`: kicked, left, blocked, forbidden): mark it inactive;
        True (and counted) when it was not inactive already."""
        try:
            changed = await self.repo.set_state(chat_id, "inactive", reason, title=title, chat_type=chat_type)
        except SettingsUnavailable:
            return False
        if changed:
            metrics.CHAT_REMOVALS.labels(reason=reason).inc()
            log.info("chat inactive", extra={"chat_id": chat_id, "reason": reason})
        return changed

    async def activate(
        self, chat_id: int, reason: str, *, title: str | None = None, chat_type: str | None = None
    ) -> bool:
        """The bot is (back) in the chat: mark it active; True when it was not."""
        try:
            changed = await self.repo.set_state(chat_id, "active", reason, title=title, chat_type=chat_type)
        except SettingsUnavailable:
            return False
        if changed:
            log.info("chat active", extra={"chat_id": chat_id, "reason": reason})
        return changed

    # --- forgetting ---------------------------------------------------------------------------------
    async def forget(self, chat_id: int, *, private: bool = False) -> None:
        """Delete everything kept about the chat at once: its rows and every Redis key of its (in
        a private chat the user's own rate window too: the user is the chat). Raises
        SettingsUnavailable when the database cannot be reached (the Redis keys go anyway)."""
        await self.forget_keys(chat_id, private=private)
        await self.repo.delete(chat_id)
        log.info("chat forgotten", extra={"chat_id": chat_id})

    async def forget_keys(self, chat_id: int, *, private: bool = False) -> None:
        """Delete every Redis key of the chat (they are a cache: a failure is logged only)."""
        try:
            await self._delete_keys(chat_id)
            if private:
                window = f"{self.limiter_prefix}:user:{chat_id}"
                await self.redis.delete(window, f"{window}:block")
        except (RedisError, OSError) as exc:
            log.warning("forget: could not delete a chat's Redis keys", extra={"error": str(exc)})

    # --- retention --------------------------------------------------------------------------------
    async def purge(self, now: datetime | None = None) -> list[int]:
        """Delete what is older than BOT_RETENTION_DAYS (as of `now`): the reply records (their text
        and reactions with them) and allow-list refusals of every chat; and the whole state of
        chats inactive or migrated for that long: their settings row and their Redis keys. The
        ids of the chats purged."""
        now = now or datetime.now(UTC)
        before = now - timedelta(days=self.settings.bot_retention_days)
        replies, refusals = await self.repo.purge_records(before)
        if replies or refusals:
            metrics.RECORDS_PURGED.labels(table="bot_replies").inc(replies)
            metrics.RECORDS_PURGED.labels(table="chat_refusals").inc(refusals)
            log.info("cleanup: records past the retention deleted", extra={"replies": replies, "refusals": refusals})
        chat_ids = await self.repo.purge(before)
        for chat_id in chat_ids:
            try:
                await self._delete_keys(chat_id)
            except (RedisError, OSError) as exc:  # they expire by themselves anyway
                log.warning("cleanup: could not delete a chat's Redis keys", extra={"error": str(exc)})
        if chat_ids:
            metrics.CHATS_PURGED.inc(len(chat_ids))
            log.info("cleanup: chats past the retention deleted", extra={"chats": len(chat_ids)})
        return chat_ids

    async def run_cleanup(self, clock: Callable[[], datetime] | None = None) -> None:
        """`purge` at start and every BOT_CLEANUP_INTERVAL_S, until cancelled."""
        while True:
            try:
                await self.purge(clock() if clock else None)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("cleanup: database unreachable, trying later", extra={"error": str(exc)})
            except Exception:  # never let the job die
                log.exception("cleanup failed")
            await asyncio.sleep(self.settings.bot_cleanup_interval_s)  # the job's period, not a synchronisation

    # --- slow mode --------------------------------------------------------------------------------
    async def slow_mode_delay(self, chat_id: int) -> int:
        """The supergroup's `slow_mode_delay` in seconds (0: none), from getChat, cached in Redis;
        concurrent sends to one chat share one getChat."""
        try:
            cached = await self.redis.get(self.chat_info_key(chat_id))
        except (RedisError, OSError):
            cached = None
        if cached is not None:
            return int(cached)
        lookup = self._lookups.get(chat_id)
        if lookup is None:
            lookup = self._lookups[chat_id] = asyncio.ensure_future(self._read_slow_mode(chat_id))
            lookup.add_done_callback(lambda _: self._lookups.pop(chat_id, None))
        return await asyncio.shield(lookup)

    async def _read_slow_mode(self, chat_id: int) -> int:
        ttl: float = self.settings.bot_chat_info_cache_s
        try:
            info = await self.bot.get_chat(chat_id)
            delay = int(info.slow_mode_delay or 0)
        except TelegramMigrateToChat as exc:
            await self.migrate(chat_id, exc.migrate_to_chat_id)
            return 0
        except TelegramAPIError as exc:
            log.info("getChat failed: assuming no slow mode", extra={"chat_id": chat_id, "error": type(exc).__name__})
            delay, ttl = 0, min(ttl, CHAT_INFO_RETRY_S)
        if ttl > 0:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.set(self.chat_info_key(chat_id), delay, ex=max(1, int(ttl)))
        return delay
