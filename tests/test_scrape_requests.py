"""The scraper's wait for crawl requests from the admin API (shared/scrape_requests.py), on a real Redis."""

from __future__ import annotations

import asyncio
import json

import redis

from shared.scrape_requests import CRAWL_REQUESTS_KEY, wait_for_crawl_request

# Longer than redis-py's default socket timeout (5 s), which once ended the wait early and left
# the scraper sleeping through the rest of its interval, deaf to requests.
PAST_THE_SOCKET_TIMEOUT_S = 6.5


async def test_a_request_that_comes_late_in_a_long_wait_is_taken(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete(CRAWL_REQUESTS_KEY)
    waiting = asyncio.create_task(wait_for_crawl_request(redis_url, 3600))
    await asyncio.sleep(PAST_THE_SOCKET_TIMEOUT_S)  # the scenario: the request arrives this late
    assert not waiting.done()
    client.lpush(CRAWL_REQUESTS_KEY, json.dumps({"request_id": "late"}))
    assert await asyncio.wait_for(waiting, 10) == {"request_id": "late"}


def blocked_in_blpop(client: redis.Redis) -> int:
    return sum(1 for c in client.client_list() if c.get("cmd") == "blpop")


async def test_a_cancelled_wait_ends_at_once(redis_url):
    """SIGTERM cancels the scraper's loop while it waits: it must not sleep on."""
    client = redis.Redis.from_url(redis_url)
    before = blocked_in_blpop(client)
    waiting = asyncio.create_task(wait_for_crawl_request(redis_url, 3600))
    deadline = asyncio.get_running_loop().time() + 30
    while blocked_in_blpop(client) == before:  # until Redis holds it in the BLPOP: the case under test
        assert not waiting.done() and asyncio.get_running_loop().time() < deadline, "the wait never reached BLPOP"
        await asyncio.sleep(0.01)  # polling Redis for the blocked client; bounded by the deadline
    waiting.cancel()
    done, _ = await asyncio.wait([waiting], timeout=5)
    assert waiting in done and waiting.cancelled()
    client.close()


async def test_without_redis_the_wait_is_the_schedule():
    assert await wait_for_crawl_request(None, 0.05) is None
    assert await wait_for_crawl_request("redis://127.0.0.1:1/0", 0.05) is None  # nothing listens there
