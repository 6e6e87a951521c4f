"""Crawl requests from the admin API to a running scraper, through a Redis list.

The gateway pushes a request; the scraper's `run` loop waits on the list between scheduled
crawls (BLPOP with the time left as timeout), so a request starts a crawl at once.
"""

from __future__ import annotations

import asyncio
import json
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

CRAWL_REQUESTS_KEY = "dvach:scraper:crawl-requests"
log = logging.getLogger(__name__)


async def wait_for_crawl_request(redis_url: str | None, timeout_s: float) -> dict | None:
    """A crawl request if one arrives within `timeout_s`, else None (after waiting it out).
    Without Redis (or when it is down) this is a plain wait: the schedule still runs."""
    if timeout_s <= 0:
        return None
    if not redis_url:
        await asyncio.sleep(timeout_s)  # the schedule's interval
        return None
    wait_s = max(1, int(timeout_s))
    # The read must outlast the BLPOP: redis-py's default socket timeout (5 s) would end the wait
    # early with "Timeout reading", and the schedule's plain sleep would then ignore requests.
    client = aioredis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=wait_s + 10)
    try:
        item = await client.blpop([CRAWL_REQUESTS_KEY], timeout=wait_s)
    except (RedisError, OSError) as exc:
        log.warning("crawl requests unavailable, waiting for the schedule", extra={"error": str(exc)})
        await asyncio.sleep(timeout_s)
        return None
    finally:
        await client.aclose()
    if item is None:
        return None
    try:
        return json.loads(item[1])
    except ValueError:
        return {"request_id": None}
