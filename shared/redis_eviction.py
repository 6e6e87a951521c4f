"""Redis is the broker and the result backend: it must refuse writes when full, never evict.

An evicting `maxmemory-policy` (managed Redis often defaults to `volatile-lru` or `allkeys-lru`)
silently drops what the system relies on: Celery's results and unacked jobs, the bot's dedupe,
rate-limit and lease keys. With `noeviction` a full Redis answers writes with an OOM error that
the callers see and report (503, a logged failure) instead. So the gateway and the workers read the
server's policy at start (`check_no_eviction`) and refuse to run, or with
REDIS_EVICTION_POLICY_CHECK=warn log an error and run. The gateway also exports the policy and the
evicted-keys counter (`read_memory_state`), which the alerts watch for a policy changed later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from shared.settings import QueueSettings as Settings

log = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"
CHECK_TIMEOUT_S = 3.0


class EvictingRedisError(RuntimeError):
    """The Redis server may evict keys (its maxmemory-policy is not noeviction)."""


@dataclass(frozen=True)
class MemoryState:
    """What INFO says about the server's memory: `policy` is its maxmemory-policy, `maxmemory`
    0 when unlimited, `evicted_keys` a counter since the server started."""

    policy: str
    maxmemory: int
    used_memory: int
    evicted_keys: int

    @property
    def evicts(self) -> bool:
        return self.policy != SAFE_POLICY


def memory_state(info: dict[str, Any]) -> MemoryState:
    """A MemoryState from INFO's fields (the `memory` and `stats` sections, merged)."""
    return MemoryState(
        policy=str(info.get("maxmemory_policy", "unknown")),
        maxmemory=int(info.get("maxmemory", 0)),
        used_memory=int(info.get("used_memory", 0)),
        evicted_keys=int(info.get("evicted_keys", 0)),
    )


def read_memory_state(client: redis.Redis) -> MemoryState:
    """INFO memory and INFO stats of `client`'s server (INFO is allowed where CONFIG is not,
    as on most managed Redis)."""
    return memory_state({**client.info("memory"), **client.info("stats")})


def refusal_message(policy: str, service: str) -> str:
    return (
        f"{service}: the Redis server's maxmemory-policy is {policy!r}: it may evict queued jobs, results "
        f"and the bot's keys. Set maxmemory-policy {SAFE_POLICY} on the server (docs/deploy.md, "
        "'Redis as a broker'), or REDIS_EVICTION_POLICY_CHECK=warn to run anyway"
    )


def check_no_eviction(settings: Settings, service: str) -> MemoryState | None:
    """Read the policy of REDIS_URL's server. Raises EvictingRedisError when it evicts and
    REDIS_EVICTION_POLICY_CHECK is `refuse`; logs an error when it is `warn`. Returns the state
    read, or None when the server could not be asked (logged: the gateway's metric and the
    alert RedisEvictionPolicy still catch an evicting server later)."""
    if not settings.redis_url:
        return None
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S
    )
    try:
        state = read_memory_state(client)
    except (redis.RedisError, OSError) as exc:
        log.warning(
            "could not read the Redis eviction policy; not checked",
            extra={"service": service, "error": f"{type(exc).__name__}: {str(exc)[:200]}"},
        )
        return None
    finally:
        client.close()
    if not state.evicts:
        return state
    message = refusal_message(state.policy, service)
    if settings.redis_eviction_policy_check == "refuse":
        log.critical(message, extra={"service": service, "maxmemory_policy": state.policy})
        raise EvictingRedisError(message)
    log.error("REDIS EVICTS KEYS: " + message, extra={"service": service, "maxmemory_policy": state.policy})
    return state
