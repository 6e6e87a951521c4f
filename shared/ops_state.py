"""Operational state the workers publish in Redis for the admin API and the dashboards:
which model each worker process serves, the most recent failed jobs, and the reranker's recent
choices (candidates, scores, the deciding rule).

Workers write with the sync client (they are not async); the gateway reads with the async one.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
import redis.asyncio as aioredis

WORKERS_KEY = "dvach:workers"  # hash: node name -> JSON of what it serves
FAILURES_KEY = "dvach:failures"  # list, newest first, capped
FAILURES_KEPT = 200
CHOICES_KEY = "dvach:choices"  # list, newest first, capped: the reranker's recent choices
CHOICES_KEPT = 200


def publish_worker_model(client: redis.Redis, node: str, info: dict[str, Any]) -> None:
    client.hset(WORKERS_KEY, node, json.dumps({**info, "updated_at": time.time()}))


def record_failure(client: redis.Redis, entry: dict[str, Any]) -> None:
    with client.pipeline() as pipe:
        pipe.lpush(FAILURES_KEY, json.dumps({**entry, "at": time.time()}, ensure_ascii=False, default=str))
        pipe.ltrim(FAILURES_KEY, 0, FAILURES_KEPT - 1)
        pipe.execute()


async def worker_models(client: aioredis.Redis) -> dict[str, dict[str, Any]]:
    raw = await client.hgetall(WORKERS_KEY)
    return {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in raw.items()}


async def recent_failures(client: aioredis.Redis, limit: int = 50) -> list[dict[str, Any]]:
    return [json.loads(item) for item in await client.lrange(FAILURES_KEY, 0, limit - 1)]


def record_choice(client: redis.Redis, entry: dict[str, Any]) -> None:
    with client.pipeline() as pipe:
        pipe.lpush(CHOICES_KEY, json.dumps({**entry, "at": time.time()}, ensure_ascii=False, default=str))
        pipe.ltrim(CHOICES_KEY, 0, CHOICES_KEPT - 1)
        pipe.execute()


async def recent_choices(client: aioredis.Redis, limit: int = 50) -> list[dict[str, Any]]:
    return [json.loads(item) for item in await client.lrange(CHOICES_KEY, 0, limit - 1)]
