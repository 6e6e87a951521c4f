"""The bot's last replies per chat, kept in Redis for BOT_RECENT_REPLIES_TTL_S: each job carries
them, and the worker's reranker rejects a candidate that repeats one of them."""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def recent_key(prefix: str, chat_id: int) -> str:
    """The Redis list of a chat's recent replies (moved, deleted and listed by chat_lifecycle.py)."""
    return f"{prefix}:recent:{chat_id}"


class RecentReplies:
    def __init__(self, redis: aioredis.Redis, prefix: str, keep: int, ttl_s: int):
        self.redis = redis
        self.prefix = prefix
        self.keep = keep
        self.ttl_s = ttl_s

    def key(self, chat_id: int) -> str:
        return recent_key(self.prefix, chat_id)

    async def get(self, chat_id: int) -> list[str]:
        """The chat's last replies, newest first ([] when none, or Redis is unreachable)."""
        if self.keep == 0:
            return []
        try:
            raw = await self.redis.lrange(self.key(chat_id), 0, self.keep - 1)
        except (RedisError, OSError) as exc:
            log.warning("recent replies: could not read", extra={"error": str(exc)})
            return []
        return [r.decode() if isinstance(r, bytes) else r for r in raw]

    async def add(self, chat_id: int, text: str) -> None:
        if self.keep == 0 or not text:
            return
        key = self.key(chat_id)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(key, text)
                pipe.ltrim(key, 0, self.keep - 1)
                pipe.expire(key, self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("recent replies: could not remember a reply", extra={"error": str(exc)})
