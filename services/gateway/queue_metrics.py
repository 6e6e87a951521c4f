"""Broker gauges, refreshed in the background (a scrape never waits on Redis).

- the queues' depth and the jobs workers hold, whose sum `dvach_jobs_in_system` is what the
  workers' autoscaler scales on (deploy/k8s/components/keda): every gateway replica reads the
  same Redis, so the autoscaler takes the max over them;
- the Redis server's eviction policy and evicted-keys counter (shared/redis_eviction.py), which
  the alerts RedisEvictionPolicy and RedisEvictedKeys watch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from shared.generation_client import BackendUnavailable, GenerationClient
from shared.redis_eviction import MemoryState, memory_state

log = logging.getLogger(__name__)

QUEUE_DEPTH = Gauge("dvach_queue_depth", "Jobs waiting in a generation queue", ["queue"])
JOBS_HELD = Gauge("dvach_jobs_held", "Jobs workers have taken and not acknowledged yet (reserved or running)")
JOBS_IN_SYSTEM = Gauge(
    "dvach_jobs_in_system", "Jobs waiting in the queues plus jobs workers hold (the autoscaler's metric)"
)
BROKER_UP = Gauge("dvach_broker_up", "1 if the gateway reached Redis at the last check")


class RedisMemoryCollector(Collector):
    """The last INFO read of the Redis server, as metrics (nothing before the first read)."""

    def __init__(self) -> None:
        self.state: MemoryState | None = None

    def collect(self) -> Iterator[Metric]:
        state = self.state
        if state is None:
            return
        policy = GaugeMetricFamily(
            "dvach_redis_maxmemory_policy_info", "The Redis server's maxmemory-policy (1)", labels=["policy"]
        )
        policy.add_metric([state.policy], 1)
        yield policy
        yield GaugeMetricFamily("dvach_redis_maxmemory_bytes", "Redis maxmemory (0: no limit)", value=state.maxmemory)
        yield GaugeMetricFamily("dvach_redis_used_memory_bytes", "Memory Redis uses", value=state.used_memory)
        yield CounterMetricFamily(
            "dvach_redis_evicted_keys", "Keys the Redis server evicted since it started", value=state.evicted_keys
        )


REDIS_MEMORY = RedisMemoryCollector()
REGISTRY.register(REDIS_MEMORY)


async def refresh_once(client: GenerationClient) -> None:
    """Read the queues, the held jobs and the server's memory state into the gauges."""
    depths, held = await client.jobs_in_system()
    for queue, depth in depths.items():
        QUEUE_DEPTH.labels(queue).set(depth)
    JOBS_HELD.set(held)
    JOBS_IN_SYSTEM.set(sum(depths.values()) + held)
    try:
        info = await client.redis.info("memory")
        info.update(await client.redis.info("stats"))
    except (RedisError, OSError) as exc:  # INFO refused (an ACL) or the connection dropped: the queues counted
        log.debug("redis INFO unavailable", extra={"error": type(exc).__name__})
    else:
        REDIS_MEMORY.state = memory_state(info)


async def refresh_forever(client: GenerationClient, interval_s: float = 5.0) -> None:
    while True:
        try:
            await refresh_once(client)
            BROKER_UP.set(1)
        except BackendUnavailable:
            BROKER_UP.set(0)
        except Exception:  # never let the metrics loop die
            log.exception("queue depth refresh failed")
        await asyncio.sleep(interval_s)  # the refresh period, not a synchronisation
