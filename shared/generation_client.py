"""How callers (gateway, bot, chat CLI) ask the inference workers for a reply.

`submit` puts an `inference.generate` job on a queue; `wait` awaits its result without blocking
the event loop: it subscribes to the result backend's own pub/sub channel for the job (Celery's
Redis backend publishes every state change on the result key) and reads the key once, so a result
stored before the subscription is not missed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from celery import Celery, states

from shared.celery_app import QUEUE_BULK, QUEUE_INTERACTIVE, QUEUES, create_celery_app
from shared.schemas import TASK_NAME, GenerateTask, GenerationParams, GenerationResult
from shared.settings import Settings

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
    """The worker reported a failure; `kind` is the exception type name it raised."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class BackendUnavailable(GenerationError):
    """Redis (broker or result backend) cannot be reached."""


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
    def __init__(self, settings: Settings, app: Celery | None = None):
        self.settings = settings
        self.app = app or create_celery_app(settings)
        self._redis = aioredis.from_url(
            settings.redis_url, socket_connect_timeout=3, socket_timeout=None, health_check_interval=10
        )

    @property
    def redis(self) -> aioredis.Redis:
        """The async Redis connection pool (for readers of other keys, e.g. shared.ops_state)."""
        return self._redis

    async def close(self) -> None:
        await self._redis.aclose()

    async def submit(
        self,
        dialog: list[str],
        params: GenerationParams | None = None,
        *,
        priority: Priority = "interactive",
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> str:
        """Enqueue a job and return its id. The job's deadline is now + timeout."""
        now = time.time()
        job_id = request_id or uuid.uuid4().hex
        task = GenerateTask(
            request_id=job_id,
            dialog=dialog,
            params=params or GenerationParams(),
            deadline=now + (timeout_s or self.settings.reply_timeout_s),
            enqueued_at=now,
        )
        try:
            # Remember the id so that /v1/jobs can tell "queued" from "never existed".
            await self._redis.set(_JOB_KEY + job_id, "1", ex=self.settings.result_expires_s)
            # kombu's publish is blocking I/O; keep it off the event loop.
            await asyncio.to_thread(
                self.app.send_task,
                TASK_NAME,
                kwargs=task.model_dump(mode="json"),
                task_id=job_id,
                queue=_QUEUE_OF[priority],
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.4, "interval_max": 1},
            )
        except Exception as exc:  # kombu raises OperationalError and friends
            raise BackendUnavailable(f"could not enqueue: {exc}") from exc
        return job_id

    def _decode(self, job_id: str, payload: bytes | None) -> JobStatus:
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
            async with self._redis.pubsub() as pubsub:
                await pubsub.subscribe(key)
                status = self._decode(job_id, await self._redis.get(key))
                while not status.ready:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise JobTimeout(f"no result for job {job_id} within {timeout_s:.1f}s")
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(remaining, 1.0))
                    if message is not None:
                        status = self._decode(job_id, message["data"])
        except _REDIS_DOWN as exc:
            raise BackendUnavailable(str(exc)) from exc
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
        return dict(zip(QUEUES, (int(n) for n in lengths)))

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
        except Exception:  # broker down: no worker can be reached either
            return []
        return sorted(name for reply in replies for name in reply)
