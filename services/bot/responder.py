"""Making one reply: checks that need shared state, the job on the queue, "typing", the answer.

`respond` never raises for expected trouble (no worker, Redis down, Telegram refusing): it counts
a skip with its reason and, in a private chat, apologises at most once per
BOT_APOLOGY_INTERVAL_S, so a dead backend costs users one short note, not a flood of them.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from aiogram.types import Message
from cachetools import TTLCache
from redis.exceptions import RedisError

from services.bot import metrics, texts
from services.bot.delivery import Delivery, clean_reply
from services.bot.policy import ReplyKind
from services.bot.rate_limit import RateLimiter, Window
from services.bot.recent_replies import RecentReplies
from services.bot.reply_log import ReplyLog
from services.bot.typing_indicator import TypingIndicator
from shared.generation_client import BackendUnavailable, GenerationClient, JobFailed, JobTimeout
from shared.schemas import Choice, GenerationParams, Tone
from shared.settings import BotSettings

log = logging.getLogger(__name__)


def chosen_scores(choice: Choice | None) -> dict | None:
    """What the reranker made of the reply it chose, and the rule that chose it (for bot_replies)."""
    if choice is None:
        return None
    chosen = choice.candidates[choice.index].model_dump(exclude={"text"})
    return {**chosen, "rule": choice.rule, "candidates": len(choice.candidates)}


def cooldown_key(prefix: str, chat_id: int) -> str:
    """The Redis key that holds a chat's random-reply cooldown."""
    return f"{prefix}:cooldown:{chat_id}"


class Responder:
    def __init__(
        self,
        client: GenerationClient,
        delivery: Delivery,
        *,
        typing: TypingIndicator,
        limiter: RateLimiter,
        redis: aioredis.Redis,
        prefix: str,
        settings: BotSettings,
        params: GenerationParams | None = None,
        replies: ReplyLog | None = None,
        recent: RecentReplies | None = None,
    ):
        self.client = client
        self.delivery = delivery
        self.typing = typing
        self.limiter = limiter
        self.redis = redis
        self.prefix = prefix
        self.settings = settings
        self.params = params or GenerationParams()
        self.replies = replies
        self.recent = recent or RecentReplies(
            redis, prefix, settings.bot_recent_replies, settings.bot_recent_replies_ttl_s
        )
        # Chats apologised to within the interval; bounded, since this is only a courtesy.
        self._apologised: TTLCache[int, bool] = TTLCache(maxsize=10_000, ttl=settings.bot_apology_interval_s)
        self._in_flight: set[asyncio.Task] = set()

    async def user_allowed(self, user_id: int | None) -> bool:
        """Whether this user may trigger another reply this minute (BOT_USER_REPLIES_PER_MINUTE)."""
        limit = self.settings.bot_user_replies_per_minute
        if not limit or user_id is None:
            return True
        if await self.limiter.try_acquire([Window(f"user:{user_id}", limit, 60.0)]) > 0:
            metrics.SKIPS.labels(reason="user_flood").inc()
            return False
        return True

    async def _random_allowed(self, message: Message, cooldown_s: int) -> bool:
        """A random reply only when the queue is short, the group has spare budget, and the chat's
        cooldown has passed (claimed atomically, so replicas do not both take it)."""
        chat = message.chat
        try:
            depths = await self.client.queue_depths()
        except BackendUnavailable:
            metrics.SKIPS.labels(reason="backend_down").inc()
            return False
        if sum(depths.values()) > self.settings.bot_bulk_queue_limit:
            metrics.SKIPS.labels(reason="queue_full").inc()
            return False
        if not await self.delivery.random_reply_fits(chat.id, chat.type):
            metrics.SKIPS.labels(reason="rate_limited").inc()
            return False
        if cooldown_s > 0:
            try:
                claimed = await self.redis.set(cooldown_key(self.prefix, chat.id), "1", nx=True, ex=cooldown_s)
            except (RedisError, OSError):
                metrics.SKIPS.labels(reason="backend_down").inc()
                return False
            if not claimed:
                metrics.SKIPS.labels(reason="cooldown").inc()
                return False
        return True

    async def respond(
        self,
        message: Message,
        kind: ReplyKind,
        dialog: list[str],
        received_at: float | None,
        cooldown_s: int = 0,
        *,
        learn: bool = False,
        tone: Tone = "normal",
    ) -> None:
        """Generate a reply to `message` from `dialog` (newest first), chosen for the chat's `tone`
        among the worker's candidates, and send it; the reply is recorded (with `dialog` and its
        text only when the chat `learn`s)."""
        if kind == "random":
            if not await self._random_allowed(message, cooldown_s):
                return
        elif not await self.user_allowed(message.from_user.id if message.from_user else None):
            log.info("reply skipped: user flood", extra={"chat_id": message.chat.id})
            return
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        metrics.IN_FLIGHT.inc()
        try:
            await self._respond(message, kind, dialog, received_at, learn=learn, tone=tone)
        finally:
            metrics.IN_FLIGHT.dec()
            self._in_flight.discard(task)

    async def _respond(
        self,
        message: Message,
        kind: ReplyKind,
        dialog: list[str],
        received_at: float | None,
        *,
        learn: bool,
        tone: Tone,
    ) -> None:
        chat = message.chat
        thread_id = message.message_thread_id if message.is_topic_message else None
        timeout = self.settings.reply_timeout_s
        async with self.typing.typing(chat.id, thread_id):
            try:
                job_id = await self.client.submit(
                    dialog,
                    self.params,
                    priority="bulk" if kind == "random" else "interactive",
                    timeout_s=timeout,
                    tone=tone,
                    recent_replies=await self.recent.get(chat.id),
                )
                result = await self.client.wait(job_id, timeout)
            except (JobTimeout, JobFailed, BackendUnavailable) as exc:
                reason = {JobTimeout: "timeout", JobFailed: "failed"}.get(type(exc), "backend_down")
                metrics.SKIPS.labels(reason=reason).inc()
                log.warning(
                    "no reply from the workers",
                    extra={"chat_id": chat.id, "kind": kind, "reason": reason, "error": str(exc)},
                )
                await self._apologise(message, kind)
                return
            text = clean_reply(result.text)
            if not text:
                metrics.SKIPS.labels(reason="empty_reply").inc()
                return
            # Wait for the send budget while still "typing": the chat sees the bot is busy.
            slot = await self.delivery.reserve(chat.id, chat.type, kind)
            if slot is None:
                return
        sent = await self.delivery.send_reply(message, text, kind, received_at, slot)
        choice = result.choice
        if sent is not None and self.replies is not None:
            await self.replies.record(
                sent.chat.id,
                sent.message_id,
                job_id=job_id,
                model_version=result.model_version,
                tone=choice.tone if choice else tone,
                scores=chosen_scores(choice),
                dialog=dialog if learn else None,
                text=text if learn else None,
            )
        if sent is not None:
            await self.recent.add(sent.chat.id, text)
            log.info(
                "replied",
                extra={
                    "chat_id": chat.id,
                    "kind": kind,
                    "turns": len(dialog),
                    "job_id": job_id,
                    "queue_ms": result.queue_ms,
                    "generate_ms": result.generate_ms,
                    # The tone the reply was chosen for, and why this candidate (shared/schemas.py Choice).
                    "tone": choice.tone if choice else tone,
                    "candidates": len(choice.candidates) if choice else 1,
                    "chosen": choice.index if choice else 0,
                    "rule": choice.rule if choice else None,
                    "update_to_reply_s": round(time.monotonic() - received_at, 3) if received_at else None,
                },
            )

    async def _apologise(self, message: Message, kind: ReplyKind) -> None:
        """Silence in groups; in a private chat a short note, at most once per interval."""
        chat = message.chat
        if chat.type != "private" or kind == "random":
            return
        if chat.id in self._apologised:
            return
        self._apologised[chat.id] = True
        await self.delivery.answer(message, texts.APOLOGY, kind="apology")

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for replies in flight, at shutdown."""
        pending = [t for t in self._in_flight if not t.done() and t is not asyncio.current_task()]
        if pending and timeout_s > 0:
            log.info("waiting for replies in flight", extra={"count": len(pending), "timeout_s": timeout_s})
            await asyncio.wait(pending, timeout=timeout_s)
