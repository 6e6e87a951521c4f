"""Queue depth as a Prometheus gauge, refreshed in the background (a scrape never waits on Redis)."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge

from shared.generation_client import BackendUnavailable, GenerationClient

log = logging.getLogger(__name__)

QUEUE_DEPTH = Gauge("dvach_queue_depth", "Jobs waiting in a generation queue", ["queue"])
BROKER_UP = Gauge("dvach_broker_up", "1 if the gateway reached Redis at the last check")


async def refresh_forever(client: GenerationClient, interval_s: float = 5.0) -> None:
    while True:
        try:
            for queue, depth in (await client.queue_depths()).items():
                QUEUE_DEPTH.labels(queue).set(depth)
            BROKER_UP.set(1)
        except BackendUnavailable:
            BROKER_UP.set(0)
        except Exception:  # never let the metrics loop die
            log.exception("queue depth refresh failed")
        await asyncio.sleep(interval_s)  # the refresh period, not a synchronisation
