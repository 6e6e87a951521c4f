"""One poller per token: the Redis lease (services/bot/poll_lease.py), alone on a real Redis and
with two real bot processes on one token against the Bot API stand-in, which answers a second
poller with 409 Conflict as Telegram does."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
import redis.asyncio as aioredis

from services.bot.poll_lease import PollLease, check_ttl
from shared.embedded import RedisServer
from tests.bot.conftest import BOT_TEST_ENV, BotProcess, make_token
from tests.bot.fake_telegram import FakeTelegram


def test_the_ttl_must_outlast_a_long_poll():
    assert check_ttl(60, 20) is None
    problem = check_ttl(30, 20)
    assert problem and "BOT_POLL_LEASE_TTL_S=30" in problem and "50" in problem


@pytest.fixture
def lease_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


async def test_one_holder_at_a_time_and_a_release_hands_over(lease_redis):
    client = aioredis.Redis.from_url(lease_redis.url)
    first, second = (PollLease(client, "bot:lease", 3.0, owner=name) for name in ("a", "b"))
    try:
        assert await first.try_acquire()
        assert not await second.try_acquire()
        assert await first.renew() and not await second.renew()
        await second.release()  # not the holder: nothing happens
        assert await client.get("bot:lease") == b"a"
        await first.release()
        stop = asyncio.Event()
        assert await asyncio.wait_for(second.acquire(stop), 10)
        assert await client.get("bot:lease") == b"b"
    finally:
        await client.aclose()


async def test_a_holder_stops_when_another_took_the_lease(lease_redis):
    client = aioredis.Redis.from_url(lease_redis.url)
    lease = PollLease(client, "bot:lease", 0.6, owner="a")
    try:
        assert await lease.try_acquire()
        holding = asyncio.create_task(lease.hold())
        await client.set("bot:lease", "b", px=600)  # it expired, and another replica took it
        await asyncio.wait_for(holding, 10)
    finally:
        await client.aclose()


async def test_a_holder_that_loses_redis_stops_before_its_lease_can_expire(lease_redis):
    now = [0.0]
    client = aioredis.Redis.from_url(lease_redis.url, socket_connect_timeout=1, socket_timeout=1)
    lease = PollLease(client, "bot:lease", 0.6, owner="a", clock=lambda: now[0])
    try:
        assert await lease.try_acquire()
        holding = asyncio.create_task(lease.hold())
        lease_redis.stop()
        # Failed renewals before half the TTL: still polling.
        await asyncio.sleep(lease.renew_every_s * 3)  # several renewal rounds fail meanwhile
        assert not holding.done()
        now[0] = lease.give_up_after_s  # half the TTL since the last renewal was sent
        await asyncio.wait_for(holding, 10)
    finally:
        await client.aclose()


def conflicts(server: FakeTelegram) -> list:
    return [c for c in server.calls if c.method == "getUpdates" and c.status == 409]


def polling(bot: BotProcess) -> float | None:
    """The replica's dvach_bot_polling; None before it serves /metrics (it identifies itself first)."""
    assert bot.alive(), bot.log_text()[-2000:]
    try:
        return bot.metrics().get(("dvach_bot_polling", ()))
    except httpx.HTTPError:
        return None


def wait_until(condition, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)  # polling the bots' metrics; bounded by the deadline
    return value


def test_two_replicas_on_one_token_never_poll_at_once(service_env, worker, tmp_path):
    bot_id, token = make_token()
    server = FakeTelegram(token=token, bot_id=bot_id).start()
    env = {**service_env, **BOT_TEST_ENV, "BOT_POLLING_TIMEOUT_S": "1", "BOT_POLL_LEASE_TTL_S": "12"}
    first = BotProcess(server, env, tmp_path, "bot-a").start()
    second = None
    try:
        first.wait_ready()
        second = BotProcess(server, env, tmp_path, "bot-b").start()
        wait_until(lambda: polling(first) == 1 and polling(second) == 0, "one polls, the other stands by")
        chat, user = server.private(server.user()), server.user()
        message = server.send_user_message(chat, user, "кто тут главный")
        server.wait_reply(chat["id"], message["message_id"])

        # A graceful stop hands over: the standby polls and answers.
        first.stop()
        assert first.process.returncode == 0, first.log_text()[-2000:]
        wait_until(lambda: polling(second) == 1, "the standby took over")
        message = server.send_user_message(chat, user, "а теперь кто")
        server.wait_reply(chat["id"], message["message_id"])

        # A holder killed outright: a new replica takes over once the lease expires.
        third = BotProcess(server, env, tmp_path, "bot-c").start()
        wait_until(lambda: polling(third) == 0, "the new replica stands by")
        os.killpg(second.pid, signal.SIGKILL)
        second.process.wait()
        wait_until(lambda: polling(third) == 1, "the new replica took over after the TTL", timeout=60)
        message = server.send_user_message(chat, user, "ну что, живой")
        server.wait_reply(chat["id"], message["message_id"])
        third.stop()
        assert not conflicts(server), "two replicas polled at once"
    finally:
        for bot in (first, second):
            if bot is not None:
                bot.kill()
        server.stop()
