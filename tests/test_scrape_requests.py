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


async def test_a_cancelled_wait_ends_at_once(redis_url):
    """SIGTERM cancels the scraper's loop while it waits: it must not sleep on."""
    waiting = asyncio.create_task(wait_for_crawl_request(redis_url, 3600))
    await asyncio.sleep(0.2)  # let it reach the BLPOP
    waiting.cancel()
    done, _ = await asyncio.wait([waiting], timeout=5)
    assert waiting in done and waiting.cancelled()


async def test_without_redis_the_wait_is_the_schedule():
    assert await wait_for_crawl_request(None, 0.05) is None
    assert await wait_for_crawl_request("redis://127.0.0.1:1/0", 0.05) is None  # nothing listens there
