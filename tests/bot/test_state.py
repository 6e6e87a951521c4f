"""The bot's shared state on real servers: rate windows and claims in Redis, chat settings in Postgres."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from services.bot.chat_settings import DEFAULT_REPLY_CHANCE, ChatSettingsRepo, SettingsUnavailable
from services.bot.context import ChainCache
from services.bot.dedupe import Claims
from services.bot.rate_limit import LocalWindows, RateLimiter, Window
from shared.db import make_async_engine


@pytest.fixture
async def redis(redis_url):
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}"


async def test_window_never_exceeded_by_concurrent_reservations(redis, prefix):
    """40 senders at once against 5 a minute: exactly 5 get a slot now, the rest are told how
    long to wait (until the oldest slot frees, never longer than the window). A minute, so that
    a loaded machine cannot spread the 40 reservations past the window's end."""
    limiter = RateLimiter(redis, prefix)
    windows = [Window("chat:1", 5, 60.0)]
    waits = await asyncio.gather(*(limiter.try_acquire(windows) for _ in range(40)))
    assert sum(1 for w in waits if w == 0) == 5
    assert all(0 < w <= 60.0 for w in waits if w > 0)


async def test_two_limiters_share_the_windows(redis, prefix):
    """Two replicas (two limiters on one Redis) share one budget."""
    a, b = RateLimiter(redis, prefix), RateLimiter(redis, prefix)
    windows = [Window("group:1", 3, 60.0)]
    results = [await limiter.try_acquire(windows) for limiter in (a, b, a, b, a)]
    assert [r == 0 for r in results] == [True, True, True, False, False]


async def test_reservation_is_all_or_nothing(redis, prefix):
    limiter = RateLimiter(redis, prefix)
    assert await limiter.try_acquire([Window("g", 1, 60.0)]) == 0
    # The chat window has room but the group window does not: nothing is taken from either.
    assert await limiter.try_acquire([Window("c", 1, 60.0), Window("g", 1, 60.0)]) > 0
    assert await limiter.try_acquire([Window("c", 1, 60.0)]) == 0


async def test_peek_does_not_reserve(redis, prefix):
    limiter = RateLimiter(redis, prefix)
    for _ in range(3):
        assert await limiter.try_acquire([Window("x", 1, 60.0)], reserve=False) == 0
    assert await limiter.try_acquire([Window("x", 1, 60.0)]) == 0
    assert await limiter.try_acquire([Window("x", 1, 60.0)], reserve=False) > 0


async def test_acquire_waits_for_a_slot_within_bound(redis, prefix):
    """Checked on Redis' clock and on what the limiter asked to sleep, not on how long the test
    took: a loaded machine only makes the waits longer."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # a real sleep, recorded
        slept.append(seconds)
        await asyncio.sleep(seconds)

    limiter = RateLimiter(redis, prefix, sleep=sleep)
    # "log" has room for every event; it keeps their times on Redis' clock for the check below.
    windows = [Window("w", 1, 0.3), Window("log", 100, 60.0)]
    assert await limiter.acquire(windows, max_wait_s=0) is not None
    slot = await limiter.acquire(windows, max_wait_s=30)
    assert slot is not None and slot.waited >= sum(slept) - 0.001  # it reports the time it waited
    assert all(s <= 0.3 + 0.05 for s in slept)  # never longer than the window (plus the jitter)
    first, second = [score for _, score in await redis.zrange(f"{prefix}:log", 0, -1, withscores=True)]
    assert second - first >= 300  # milliseconds: the second slot was taken only once the first expired
    # A slot that frees up only after the bound: refused at once (no sleep), nothing taken.
    assert await limiter.acquire([Window("long", 1, 60.0)], 1) is not None
    slept.clear()
    assert await limiter.acquire([Window("long", 1, 60.0)], 1) is None
    assert slept == []
    assert await redis.zcard(f"{prefix}:long") == 1


async def test_restamp_counts_a_slot_from_when_the_send_was_done(redis, prefix):
    """A send that left late: its slot moves to the moment it was done, so the next slot in its
    windows frees a window after that (on Redis' clock), and a slot another sender took is untouched."""
    limiter = RateLimiter(redis, prefix)
    chat = [Window("chat", 1, 60.0), Window("log", 100, 60.0)]
    slot = await limiter.acquire(chat, max_wait_s=0)
    other = await limiter.acquire([Window("log", 100, 60.0)], max_wait_s=0)
    assert slot is not None and other is not None
    taken = await redis.zscore(f"{prefix}:log", slot.member)
    other_taken = await redis.zscore(f"{prefix}:log", other.member)
    seconds, micros = await redis.time()
    before_restamp = seconds * 1000 + micros // 1000
    await limiter.restamp(slot)
    restamped = await redis.zscore(f"{prefix}:log", slot.member)
    assert restamped >= before_restamp >= taken
    assert await redis.zscore(f"{prefix}:chat", slot.member) == restamped
    assert await redis.zscore(f"{prefix}:log", other.member) == other_taken
    assert await redis.pttl(f"{prefix}:chat") > 59_000  # the key lives a window from the restamp


async def test_restamp_in_process_windows_while_redis_is_down(prefix):
    now = [100.0]
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    limiter = RateLimiter(dead, prefix, clock=lambda: now[0])
    window = [Window("chat", 1, 1.0)]
    slot = await limiter.acquire(window, max_wait_s=0)
    assert slot is not None and slot.local_at == 100.0
    now[0] = 100.7  # the send was done 0.7 s after its slot
    await limiter.restamp(slot)
    now[0] = 101.2  # a second after the slot, but not after the send
    assert await limiter.try_acquire(window) == pytest.approx(0.5)
    now[0] = 101.7
    assert await limiter.try_acquire(window) == 0
    await dead.aclose()


async def test_block_after_429_holds_everyone(redis, prefix):
    limiter = RateLimiter(redis, prefix)
    await limiter.block("chat:9", 60)
    wait = await limiter.try_acquire([Window("chat:9", 100, 1.0)])
    assert 1.0 < wait <= 60.0


async def test_falls_back_to_local_windows_without_redis(prefix):
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    limiter = RateLimiter(dead, prefix)
    windows = [Window("chat:1", 2, 60.0)]
    assert [await limiter.try_acquire(windows) == 0 for _ in range(3)] == [True, True, False]
    await dead.aclose()


def test_local_windows_match():
    now = [100.0]
    local = LocalWindows(clock=lambda: now[0])
    windows = [Window("a", 2, 1.0), Window("b", 3, 1.0)]
    assert [local.try_acquire(windows) == 0 for _ in range(3)] == [True, True, False]
    assert local.try_acquire(windows) == 1.0  # until the oldest of the window's events expires
    now[0] += 0.6
    assert local.try_acquire(windows) == pytest.approx(0.4)
    now[0] += 0.4
    assert local.try_acquire(windows) == 0  # the window slid past the first two
    local.block("b", 5)
    assert local.try_acquire([Window("b", 100, 1.0)]) == 5


async def test_claims_are_once_only(redis, prefix):
    claims = Claims(redis, prefix, ttl_s=60)
    results = await asyncio.gather(*(claims.claim_update(42) for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]
    assert await claims.claim_reply(-1, 5) is True
    assert await claims.claim_reply(-1, 5) is False
    assert await claims.claim_reply(-1, 6) is True


async def test_claims_fail_open_without_redis(prefix):
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    assert await Claims(dead, prefix, 60).claim_update(1) is True
    await dead.aclose()


async def test_chain_follows_cached_replies_newest_first(redis, prefix):
    cache = ChainCache(redis, prefix, ttl_s=60, max_turns=3)
    chat = -5
    await cache.remember(chat, 1, "первый", None)
    await cache.remember(chat, 2, "второй", 1)
    await cache.remember(chat, 3, "третий", 2)
    # Message 4 replies to 3; the update shows 3's text, the cache knows the rest.
    assert await cache.dialog(chat, "четвёртый", 3, "третий") == ["четвёртый", "третий", "второй"]
    assert await ChainCache(redis, prefix, 60, 8).dialog(chat, "четвёртый", 3, "третий") == [
        "четвёртый",
        "третий",
        "второй",
        "первый",
    ]
    # Not in the cache (older than the bot): only what the update shows.
    assert await cache.dialog(chat, "эй", 99, "старое") == ["эй", "старое"]
    assert await cache.dialog(chat, "", 3, None) == ["третий", "второй", "первый"]
    # A parent seen only as reply_to_message does not overwrite what is known about it.
    await cache.remember(chat, 5, "пятый", 2, parent_turn="второй")
    assert (await cache.recall(chat, 2)).reply_to == 1


async def test_chain_survives_a_cycle(redis, prefix):
    cache = ChainCache(redis, prefix, ttl_s=60, max_turns=8)
    await cache.remember(-6, 1, "a", 2)
    await cache.remember(-6, 2, "b", 1)
    assert await cache.dialog(-6, "c", 1, "a") == ["c", "a", "b"]


async def test_chat_settings_defaults_update_and_cache(database_url):
    engine = make_async_engine(database_url)
    repo = ChatSettingsRepo(engine, cache_s=60)
    chat_id = -int(time.time() * 1000)
    try:
        config = await repo.get(chat_id)
        assert (config.reply_chance, config.muted) == (DEFAULT_REPLY_CHANCE, False) == (0.1, False)
        await repo.register(chat_id, "Группа", "supergroup")
        updated = await repo.update(chat_id, title="Группа", chat_type="supergroup", reply_chance=0.7)
        assert updated.reply_chance == 0.7
        muted = await repo.update(chat_id, title="Группа", chat_type="supergroup", muted=True)
        assert (muted.reply_chance, muted.muted) == (0.7, True)
        fresh = ChatSettingsRepo(engine, cache_s=0)
        assert (await fresh.get(chat_id)).muted is True
    finally:
        await engine.dispose()


async def test_chat_settings_without_database():
    engine = make_async_engine("postgresql://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    repo = ChatSettingsRepo(engine, cache_s=60)
    try:
        assert (await repo.get(-1)).reply_chance == DEFAULT_REPLY_CHANCE
        with pytest.raises(SettingsUnavailable):
            await repo.update(-1, reply_chance=0.5)
    finally:
        await engine.dispose()
