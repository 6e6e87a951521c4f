"""Sliding-window rate limits kept in Redis, so they hold across concurrent sends and replicas.

A reservation checks every window it names at once (global, chat, group, user) and takes a slot
in all of them or in none, atomically in one Lua script using Redis' own clock. When a window is
full the script answers how long until a slot frees up, and the caller decides whether to wait.
A 429 from Telegram blocks a window for its `retry_after` the same way.

A slot is taken when the send is allowed, but Telegram counts a message when it arrives: a send
that leaves late (a busy event loop, a slow connection) followed by one on its reserved time would
arrive closer together than the window allows. So once a send is done, its slot is moved to that
moment (`restamp`): the next send through the same windows leaves a whole window after the
previous one was answered, which is after Telegram received it, however loaded the machine is.

If Redis cannot be reached the limiter falls back to the same windows kept in this process: a
single replica keeps honouring Telegram's limits while Redis is down.

Why a script of our own rather than a library: `limits` (Redis storage) hits one limit per call,
so a send could take the chat's slot and then be refused the global one, spending a slot it never
uses; `aiolimiter` keeps its buckets in one process, which replicas cannot share. Neither
reserves in several windows atomically, says how long until all of them have room, or lets a
429's `retry_after` block a window.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS: the window keys. ARGV: reserve (0|1), member, then limit and window (ms) for each key.
# Returns 0 when a slot was taken (or would be, when reserve is 0), else milliseconds to wait.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reserve = ARGV[1] == '1'
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  local blocked = redis.call('PTTL', key .. ':block')
  if blocked > wait then wait = blocked end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local free_at = tonumber(oldest[2]) + window - now
    if free_at > wait then wait = free_at end
  end
end
if wait > 0 or not reserve then return wait end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[2 + 2 * i]))
end
return 0
"""

# KEYS: the window keys of a slot. ARGV: its member, then each window (ms). Moves the slot to now,
# in the windows that still hold it.
_RESTAMP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, ARGV[1]) then
    redis.call('ZADD', key, 'XX', now, ARGV[1])
    redis.call('PEXPIRE', key, tonumber(ARGV[1 + i]))
  end
end
return 0
"""


@dataclass(frozen=True)
class Slot:
    """A slot taken in `windows` (after waiting `waited` seconds), to restamp once the send is done.
    `local_at`: taken in this process' windows (Redis was unreachable), at that time."""

    waited: float
    member: str
    windows: tuple[Window, ...]
    local_at: float | None = None


@dataclass(frozen=True)
class Window:
    """At most `limit` events in any `seconds`-long window, counted under `key`."""

    key: str
    limit: int
    seconds: float


class LocalWindows:
    """The same windows in this process' memory (the fallback while Redis is unreachable), on
    `clock` (a `time.monotonic`-like callable)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._blocked_until: dict[str, float] = {}

    def try_acquire(self, windows: list[Window], reserve: bool = True, now: float | None = None) -> float:
        """As RateLimiter.try_acquire; `now` (this object's clock) is when a slot is taken."""
        now = self._clock() if now is None else now
        wait = 0.0
        for w in windows:
            wait = max(wait, self._blocked_until.get(w.key, 0.0) - now)
            events = self._events[w.key]
            while events and events[0] <= now - w.seconds:
                events.popleft()
            if len(events) >= w.limit:
                wait = max(wait, events[len(events) - w.limit] + w.seconds - now)
        if wait > 0 or not reserve:
            return max(wait, 0.0)
        for w in windows:
            self._events[w.key].append(now)
        return 0.0

    def restamp(self, windows: tuple[Window, ...], taken_at: float) -> None:
        """Move the event taken at `taken_at` to now in each window that still holds it."""
        now = self._clock()
        for w in windows:
            events = self._events[w.key]
            if taken_at in events:
                events.remove(taken_at)
                events.append(now)  # the newest event: the deque stays in time order

    def block(self, key: str, seconds: float) -> None:
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), self._clock() + seconds)


class RateLimiter:
    """`clock` (a `time.monotonic`-like callable) and `sleep` time the waits of `acquire`; tests
    pass their own. The windows themselves run on Redis' clock."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.redis = redis
        self.prefix = prefix
        self.local = LocalWindows(clock)
        self._clock = clock
        self._sleep = sleep
        self._script = redis.register_script(_SCRIPT)
        self._restamp = redis.register_script(_RESTAMP)
        self._last_warning = 0.0

    def _redis_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:  # one line a minute, not one per message
            self._last_warning = now
            log.warning("rate limiter: Redis unreachable, using in-process windows", extra={"error": str(exc)})

    async def try_acquire(self, windows: list[Window], reserve: bool = True) -> float:
        """0.0 when a slot was taken in every window (or would be, with reserve=False), else the
        seconds until one could be."""
        wait, _ = await self._try(windows, reserve, uuid.uuid4().hex)
        return wait

    async def _try(self, windows: list[Window], reserve: bool, member: str) -> tuple[float, float | None]:
        """(seconds to wait, the local clock's time when the slot was taken in-process instead)."""
        keys = [f"{self.prefix}:{w.key}" for w in windows]
        args: list[str | int] = ["1" if reserve else "0", member]
        for w in windows:
            args += [w.limit, int(w.seconds * 1000)]
        try:
            wait_ms = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
            taken_at = self._clock()
            wait = self.local.try_acquire(windows, reserve, now=taken_at)
            return wait, taken_at if wait <= 0 and reserve else None
        return int(wait_ms) / 1000.0, None

    async def acquire(self, windows: list[Window], max_wait_s: float) -> Slot | None:
        """Take a slot in every window, waiting up to `max_wait_s`; the slot (with the seconds
        waited), or None when no slot frees up in time (nothing is taken then)."""
        started = self._clock()
        deadline = started + max_wait_s
        member = uuid.uuid4().hex
        while True:
            wait, local_at = await self._try(windows, True, member)
            if wait <= 0:
                return Slot(self._clock() - started, member, tuple(windows), local_at)
            if self._clock() + wait > deadline:
                return None
            # A little jitter, so that the waiters of one chat do not all wake on the same tick.
            await self._sleep(wait + random.uniform(0.0, 0.05))

    async def restamp(self, slot: Slot) -> None:
        """The send that took `slot` is done: count it from now (see the module's docstring)."""
        if slot.local_at is not None:
            self.local.restamp(slot.windows, slot.local_at)
            return
        keys = [f"{self.prefix}:{w.key}" for w in slot.windows]
        try:
            await self._restamp(keys=keys, args=[slot.member, *(int(w.seconds * 1000) for w in slot.windows)])
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)

    async def block(self, key: str, seconds: float) -> None:
        """Nobody sends through window `key` for `seconds` (Telegram said 429 retry_after)."""
        self.local.block(key, seconds)
        try:
            await self.redis.set(f"{self.prefix}:{key}:block", "1", px=max(1, int(seconds * 1000)))
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
