"""At-most-once claims in Redis (SET NX): an update is handled once, a message is answered once.

Telegram redelivers an update when the poller did not confirm it (a crash, a restart) or when a
webhook call failed; several webhook replicas may even get the same one. Claiming the update id,
and again the (chat, message) pair right before sending, makes a second reply impossible. If Redis
is down the claims fail open (the update is handled): losing replies would be worse.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class Claims:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_s: int):
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s

    async def _claim(self, key: str) -> bool:
        try:
            return bool(await self.redis.set(f"{self.prefix}:{key}", "1", nx=True, ex=self.ttl_s))
        except (RedisError, OSError) as exc:
            log.warning("dedupe: Redis unreachable, handling without a claim", extra={"error": str(exc)})
            return True

    async def claim_update(self, update_id: int) -> bool:
        """True the first time this update id is seen."""
        return await self._claim(f"update:{update_id}")

    async def claim_reply(self, chat_id: int, message_id: int) -> bool:
        """True the first time the bot is about to answer this message."""
        return await self._claim(f"replied:{chat_id}:{message_id}")

    def reply_pattern(self, chat_id: int) -> str:
        """A SCAN pattern matching the reply claims of `chat_id`."""
        return f"{self.prefix}:replied:{chat_id}:*"

    def greeting_key(self, chat_id: int) -> str:
        return f"{self.prefix}:greeted:{chat_id}"

    async def claim_greeting(self, chat_id: int) -> bool:
        """True unless the bot greeted this chat within the claims' TTL (a group that adds the bot
        twice in a day, or two deliveries of one `my_chat_member`, is greeted once)."""
        return await self._claim(f"greeted:{chat_id}")
