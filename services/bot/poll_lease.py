"""One poller per token: a lease in Redis decides which bot replica polls Telegram.

Telegram serves getUpdates to one poller per token; a second one (a manual scale-up, an old pod
that a partition kept alive, a rolling update) gets 409 Conflict and the two lose updates to each
other. In polling mode a replica polls only while it holds the lease, a Redis key set with NX and
a TTL and renewed by its holder; the other replicas stand by and take over when the holder
releases it (a graceful stop) or it expires (the holder died or lost Redis).

A holder that cannot renew stops polling once half the TTL has passed since its last renewal was
sent; its last long poll (BOT_POLLING_TIMEOUT_S) then ends before the lease can expire, so two
replicas never poll at once: TTL / 2 must exceed the long poll and a request's slack
(`check_ttl`). Updates fetched by one holder and not yet confirmed are fetched again by the next;
the dedupe claims (dedupe.py) keep them from being answered twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any

import redis.asyncio as aioredis
from aiogram import Bot, Dispatcher
from redis.exceptions import RedisError

from shared.settings import BotSettings as Settings

log = logging.getLogger(__name__)

# A long poll may outlast its timeout by this much (the request's round trip, a slow answer).
REQUEST_SLACK_S = 5.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def check_ttl(ttl_s: float, polling_timeout_s: float) -> str | None:
    """Why `ttl_s` is too short for long polls of `polling_timeout_s`, or None when it is not."""
    needed = 2 * (polling_timeout_s + REQUEST_SLACK_S)
    if ttl_s < needed:
        return (
            f"BOT_POLL_LEASE_TTL_S={ttl_s:g} is too short for BOT_POLLING_TIMEOUT_S={polling_timeout_s:g}: "
            f"it must be at least 2 x (polling timeout + {REQUEST_SLACK_S:g} s) = {needed:g}"
        )
    return None


class PollLease:
    """The lease on `key` for this process (`owner` names it in Redis, for operators)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        key: str,
        ttl_s: float,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.renew_every_s = ttl_s / 6  # three tries before giving up at half the TTL
        self.give_up_after_s = ttl_s / 2

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; raises RedisError when Redis cannot be reached."""
        return bool(await self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this process holds the lease (True), or until `stop` is set (False)."""
        waiting_logged = False
        while not stop.is_set():
            try:
                if await self.try_acquire():
                    log.info("poll lease taken: this replica polls", extra={"lease": self.key, "owner": self.owner})
                    return True
                if not waiting_logged:
                    holder = await self.redis.get(self.key)
                    log.info("another replica polls: standing by", extra={"lease": self.key, "holder": holder})
                    waiting_logged = True
            except (RedisError, OSError) as exc:
                log.warning("cannot reach Redis for the poll lease", extra={"error": type(exc).__name__})
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.renew_every_s)  # the next try, or the stop
        return False

    async def renew(self) -> bool:
        """Extend the lease; False when this process no longer holds it."""
        return bool(await self.redis.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))

    async def hold(self) -> None:
        """Renew the lease until it is lost: returns when another process holds it, or when no
        renewal succeeded for half the TTL (Redis unreachable: it may expire and be taken)."""
        last_renewed = self.clock()
        while True:
            await asyncio.sleep(self.renew_every_s)  # the renewal period, not a synchronisation
            sent = self.clock()
            try:
                if not await self.renew():
                    log.warning("poll lease taken by another replica", extra={"lease": self.key})
                    return
                last_renewed = sent
            except (RedisError, OSError) as exc:
                if self.clock() - last_renewed >= self.give_up_after_s:
                    log.warning(
                        "poll lease not renewed for half its TTL: stopping polling",
                        extra={"lease": self.key, "error": type(exc).__name__},
                    )
                    return

    async def release(self) -> None:
        """Give the lease up (if still ours) so that a standby takes over at once."""
        try:
            await self.redis.eval(_RELEASE, 1, self.key, self.owner)
        except (RedisError, OSError) as exc:  # it expires on its own
            log.warning("could not release the poll lease", extra={"error": type(exc).__name__})


async def poll_while_leased(
    lease: PollLease,
    start_polling: Callable[[], Coroutine[Any, Any, None]],
    stop_polling: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    on_change: Callable[[bool], None] = lambda _polling: None,
) -> None:
    """Poll (`start_polling` runs until `stop_polling`) only while `lease` is held; stand by when
    it is lost; return once `stop` is set (the lease released) or polling ends by itself."""
    while await lease.acquire(stop):
        on_change(True)
        polling = asyncio.create_task(start_polling(), name="polling")
        lost = asyncio.create_task(lease.hold(), name="poll-lease")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait({polling, lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not polling.done():
                with suppress(RuntimeError):  # not started yet: cancelling it is enough
                    await stop_polling()
                polling.cancel()
                with suppress(asyncio.CancelledError):
                    await polling
            for task in (lost, stopping):
                task.cancel()
            on_change(False)
        if not lost.cancelled() and lost.done() and not stop.is_set():
            log.warning("poll lease lost: standing by")
            continue
        await lease.release()
        if not polling.cancelled():
            polling.result()  # polling that ended by itself: its error, if any, goes up
        return


async def run_polling(dp: Dispatcher, bot: Bot, redis: aioredis.Redis, key: str, settings: Settings) -> None:
    """Long polling for `dp` while this replica holds the lease at `key`, until SIGTERM/SIGINT."""
    from services.bot import metrics

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics.polling(False)
    await poll_while_leased(
        PollLease(redis, key, settings.bot_poll_lease_ttl_s),
        lambda: dp.start_polling(
            bot,
            polling_timeout=settings.bot_polling_timeout_s,
            tasks_concurrency_limit=settings.bot_max_concurrent_updates,
            allowed_updates=dp.resolve_used_update_types(),
            close_bot_session=False,
            handle_signals=False,  # the stop event above: a standby must stop too
        ),
        dp.stop_polling,
        stop,
        on_change=metrics.polling,
    )
