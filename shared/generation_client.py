"""How callers (gateway, bot, chat CLI) ask the inference workers for a reply.

`submit` puts an `inference.generate` job on a queue; `wait` awaits its result without blocking
the event loop: it subscribes to the result backend's own pub/sub channel for the job (Celery's
Redis backend publishes every state change on the result key) and reads the key once, so a result
stored before the subscription is not missed. All the jobs a client waits on share one pub/sub
connection subscribed to the pattern of result keys (`_ResultWatcher`): a connection per waiting
job would run the pool dry under a burst (redis-py refuses the 101st with "Too many
connections"). Short commands use a blocking pool, which makes a burst wait for a free connection
instead of failing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from celery import Celery, states
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.celery_app import QUEUE_BULK, QUEUE_INTERACTIVE, QUEUES, create_celery_app
from shared.schemas import MAX_RECENT_REPLIES, TASK_NAME, GenerateTask, GenerationParams, GenerationResult, Tone
from shared.settings import QueueSettings

Priority = Literal["interactive", "bulk"]
_QUEUE_OF = {"interactive": QUEUE_INTERACTIVE, "bulk": QUEUE_BULK}
_JOB_KEY = "dvach:job:"
# What a lost Redis connection raises (redis-py's own errors, or the socket's).
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class GenerationError(Exception):
    """Base of the errors a caller can get back for a job."""


class JobTimeout(GenerationError):
    """No result within the caller's timeout (no worker, or all of them busy)."""


class JobFailed(GenerationError):
    """The worker reported a failure; `kind` is the exception type name it raised (`ErrorKind`
    names the ones callers act on)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class BackendUnavailable(GenerationError):
    """Redis (broker or result backend) cannot be reached."""


# Connections of a client's pool for short commands; more callers wait for one (bounded).
POOL_CONNECTIONS = 64
POOL_WAIT_S = 10.0
# A waiting job re-reads its result key this often, in case a publish was missed (a reconnect).
RECHECK_S = 5.0


def blocking_redis(url: str, *, max_connections: int = POOL_CONNECTIONS, **kwargs: Any) -> aioredis.Redis:
    """An async Redis client whose pool makes callers wait for a free connection (up to
    POOL_WAIT_S) instead of raising "Too many connections" under a burst."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=POOL_WAIT_S, **kwargs)
    return aioredis.Redis.from_pool(pool)


RESUBSCRIBE = object()  # what a waiter's queue gets when the watcher's connection was lost


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _ResultWatcher:
    """One pub/sub connection for every job a client waits on. It subscribes once to the pattern
    of all result keys (no subscribe round trip per job; the other jobs' few hundred bytes are
    dropped); each waiter registers a queue for its key and gets the payloads published on it, or
    RESUBSCRIBE when the connection was lost."""

    def __init__(self, redis: aioredis.Redis, pattern: str):
        self._redis = redis
        self._pattern = pattern
        self._reader: asyncio.Task | None = None
        self._pubsub: Any = None
        self._waiters: dict[str, set[asyncio.Queue]] = {}
        self._lock = asyncio.Lock()

    async def watch(self, key: str | bytes) -> asyncio.Queue:
        """A queue for `key`'s payloads; once this returns, nothing published on `key` is missed
        (until the queue receives RESUBSCRIBE: then call `ensure_reader` and re-read the key)."""
        await self.ensure_reader()
        queue: asyncio.Queue = asyncio.Queue()
        self._waiters.setdefault(_text(key), set()).add(queue)
        return queue

    async def ensure_reader(self) -> None:
        """Subscribe and start reading, unless a reader runs already (raises when Redis is down)."""
        async with self._lock:
            if self._reader is not None and not self._reader.done():
                return
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(self._pattern)
                # Until Redis confirms, a publish could still pass unseen.
                while (await pubsub.get_message(timeout=5.0) or {}).get("type") != "psubscribe":
                    pass
            except BaseException:
                with suppress(Exception):
                    await pubsub.aclose()
                raise
            self._pubsub = pubsub
            self._reader = asyncio.create_task(self._read(pubsub), name="result-watcher")

    def unwatch(self, key: str | bytes, queue: asyncio.Queue) -> None:
        key = _text(key)
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(queue)
            if not waiters:
                del self._waiters[key]

    async def _read(self, pubsub: Any) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None or message.get("type") != "pmessage":
                    continue
                for queue in list(self._waiters.get(_text(message["channel"]), ())):
                    queue.put_nowait(message["data"])
        except Exception:  # noqa: BLE001 - a lost connection (or anything else): the waiters must not hang
            # Publishes may have been missed: every waiter resubscribes and re-reads its key (and
            # reports the backend unavailable if Redis is still down). The failure may come late,
            # after Redis is back, so it must not fail waiters outright.
            with suppress(Exception):
                await pubsub.aclose()
            for queues in list(self._waiters.values()):
                for queue in queues:
                    queue.put_nowait(RESUBSCRIBE)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with suppress(Exception):
                await self._pubsub.aclose()


@dataclass
class JobStatus:
    job_id: str
    state: str  # Celery's: PENDING (queued or unknown), STARTED, SUCCESS, FAILURE, RETRY, REVOKED
    result: GenerationResult | None = None
    error: str | None = None
    error_kind: str | None = None

    @property
    def ready(self) -> bool:
        return self.state in states.READY_STATES


class GenerationClient:
    def __init__(self, settings: QueueSettings, app: Celery | None = None):
        self.settings = settings
        self.app = app or create_celery_app(settings)
        self._redis = blocking_redis(
            settings.required_redis_url, socket_connect_timeout=3, socket_timeout=None, health_check_interval=10
        )
        self._watcher = _ResultWatcher(self._redis, _text(self.app.backend.task_keyprefix) + "*")

    @property
    def redis(self) -> aioredis.Redis:
        """The async Redis connection pool (for readers of other keys, e.g. shared.ops_state)."""
        return self._redis

    async def close(self) -> None:
        await self._watcher.close()
        await self._redis.aclose()

    async def submit(
        self,
        dialog: list[str],
        params: GenerationParams | None = None,
        *,
        priority: Priority = "interactive",
        timeout_s: float | None = None,
        request_id: str | None = None,
        tone: Tone = "normal",
        recent_replies: list[str] | None = None,
    ) -> str:
        """Enqueue a job and return its id. The job's deadline is now + timeout. `tone` and
        `recent_replies` (the chat's last replies, newest first) steer the worker's reranker."""
        now = time.time()
        job_id = request_id or uuid.uuid4().hex
        task = GenerateTask(
            request_id=job_id,
            dialog=dialog,
            params=params or GenerationParams(),
            deadline=now + (timeout_s or self.settings.reply_timeout_s),
            enqueued_at=now,
            tone=tone,
            recent_replies=(recent_replies or [])[:MAX_RECENT_REPLIES],
        )
        try:
            # Remember the id so that /v1/jobs can tell "queued" from "never existed".
            await self._redis.set(_JOB_KEY + job_id, "1", ex=self.settings.result_expires_s)
            # kombu's publish is blocking I/O; keep it off the event loop.
            await asyncio.to_thread(
                self.app.send_task,
                TASK_NAME,
                kwargs=task.model_dump(mode="json"),
                # Task events and monitors show kwargs: as JSON, whole and parseable (Celery's own
                # repr cuts them at 1 KB and does not escape backslashes or quotes in the texts).
                kwargsrepr=task.model_dump_json(),
                task_id=job_id,
                queue=_QUEUE_OF[priority],
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.4, "interval_max": 1},
            )
        except Exception as exc:  # kombu raises OperationalError and friends
            raise BackendUnavailable(f"could not enqueue: {exc}") from exc
        return job_id

    def _decode(self, job_id: str, payload: bytes | str | None) -> JobStatus:
        if payload is None:
            return JobStatus(job_id, states.PENDING)
        meta: dict[str, Any] = self.app.backend.decode(payload)
        state = meta.get("status", states.PENDING)
        if state == states.SUCCESS:
            return JobStatus(job_id, state, result=GenerationResult.model_validate(meta["result"]))
        if state in states.PROPAGATE_STATES:
            exc = meta.get("result") or {}
            kind = exc.get("exc_type", "Error") if isinstance(exc, dict) else type(exc).__name__
            message = exc.get("exc_message", "") if isinstance(exc, dict) else str(exc)
            if isinstance(message, (list, tuple)):
                message = " ".join(str(m) for m in message)
            return JobStatus(job_id, state, error=str(message), error_kind=kind)
        return JobStatus(job_id, state)

    async def is_known(self, job_id: str) -> bool:
        """Whether a job with this id was submitted (and has not expired)."""
        try:
            return bool(await self._redis.exists(_JOB_KEY + job_id))
        except _REDIS_DOWN as exc:
            raise BackendUnavailable(str(exc)) from exc

    async def status(self, job_id: str) -> JobStatus:
        key = self.app.backend.get_key_for_task(job_id)
        try:
            return self._decode(job_id, await self._redis.get(key))
        except _REDIS_DOWN as exc:
            raise BackendUnavailable(str(exc)) from exc

    async def wait(self, job_id: str, timeout_s: float) -> GenerationResult:
        """The job's result; raises JobTimeout, JobFailed or BackendUnavailable."""
        key = self.app.backend.get_key_for_task(job_id)
        deadline = time.monotonic() + timeout_s
        try:
            queue = await self._watcher.watch(key)
        except _REDIS_DOWN as exc:
            raise BackendUnavailable(str(exc)) from exc
        try:
            status = self._decode(job_id, await self._redis.get(key))
            while not status.ready:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JobTimeout(f"no result for job {job_id} within {timeout_s:.1f}s")
                try:
                    payload = await asyncio.wait_for(queue.get(), timeout=min(remaining, RECHECK_S))
                except TimeoutError:
                    payload = await self._redis.get(key)  # a publish may have been missed
                if payload is RESUBSCRIBE:
                    await self._watcher.ensure_reader()
                    payload = await self._redis.get(key)
                status = self._decode(job_id, payload)
        except _REDIS_DOWN as exc:
            raise BackendUnavailable(str(exc)) from exc
        finally:
            self._watcher.unwatch(key, queue)
        if status.state == states.SUCCESS:
            assert status.result is not None
            return status.result
        raise JobFailed(status.error_kind or status.state, status.error or status.state)

    async def generate(
        self,
        dialog: list[str],
        params: GenerationParams | None = None,
        *,
        priority: Priority = "interactive",
        timeout_s: float | None = None,
    ) -> GenerationResult:
        """Submit and wait: the whole round trip of one reply."""
        timeout = timeout_s or self.settings.reply_timeout_s
        job_id = await self.submit(dialog, params, priority=priority, timeout_s=timeout)
        return await self.wait(job_id, timeout)

    async def queue_depths(self) -> dict[str, int]:
        """Jobs waiting in each queue (plain Redis lists, as the autoscaler reads them)."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue in QUEUES:
                    pipe.llen(queue)
                lengths = await pipe.execute()
        except _REDIS_DOWN as exc:
            raise BackendUnavailable(str(exc)) from exc
        return dict(zip(QUEUES, (int(n) for n in lengths), strict=True))

    async def jobs_in_system(self) -> tuple[dict[str, int], int]:
        """(jobs waiting in each queue, jobs workers hold), read in one MULTI so that they add up.

        Jobs a worker has taken (reserved or running) are in kombu's `unacked` hash until it
        acknowledges them after the run (acks late); a dead worker's stay there until they are
        restored to their queue, so they count as work still to do."""
        unacked_key = self.app.conf.broker_transport_options.get("unacked_key", "unacked")
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for queue in QUEUES:
                    pipe.llen(queue)
                pipe.hlen(unacked_key)
                *lengths, held = await pipe.execute()
        except _REDIS_DOWN as exc:
            raise BackendUnavailable(str(exc)) from exc
        return dict(zip(QUEUES, (int(n) for n in lengths), strict=True)), int(held)

    async def ping_broker(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except _REDIS_DOWN:
            return False

    async def workers_alive(self, timeout_s: float = 1.0) -> list[str]:
        """Names of the workers that answered a broadcast ping within the timeout."""
        try:
            # limit=1: return at the first answer instead of waiting out the whole timeout.
            replies = await asyncio.to_thread(self.app.control.ping, timeout=timeout_s, limit=1)
        except Exception:  # noqa: BLE001 - broker down (kombu's or redis' error): no worker can be reached either
            return []
        return sorted(name for reply in replies for name in reply)
