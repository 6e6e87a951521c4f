"""Admin: queues, workers and recent failures."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from services.gateway.auth import ADMIN_RESPONSES, AdminDep
from services.gateway.deps import ClientDep
from shared import ops_state
from shared.generation_client import BackendUnavailable
from shared.schemas import TASK_NAME, Choice

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep], responses=ADMIN_RESPONSES)


class QueueDepths(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"queues": {"generate.interactive": 0, "generate.bulk": 3}}]}}
    queues: dict[str, int]


class WorkerInfo(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "worker@pod-1",
                    "online": True,
                    "active_jobs": 1,
                    "processed": 420,
                    "model_version": "demo",
                    "backend": "onnxruntime",
                    "concurrency": 1,
                }
            ]
        }
    }
    name: str
    online: bool
    active_jobs: int = 0
    processed: int = 0
    model_version: str | None = None
    backend: str | None = None
    concurrency: int | None = None


class FailedJob(BaseModel):
    model_config = {
        "extra": "allow",
        "json_schema_extra": {
            "examples": [
                {
                    "job_id": "9f1c...",
                    "kind": "EmptyGeneration",
                    "message": "the model gave an empty reply 3 times",
                    "worker": "worker@pod-1",
                    "at": 1764345600.0,
                }
            ]
        },
    }
    job_id: str | None = None
    kind: str = Field(description="Exception type")
    message: str = ""
    worker: str | None = None
    at: float = Field(description="Unix seconds")


@router.get("/queues", response_model=QueueDepths, summary="Jobs waiting per queue")
async def queue_depths(client: ClientDep) -> QueueDepths:
    try:
        return QueueDepths(queues=await client.queue_depths())
    except BackendUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"Redis unreachable: {exc}") from None


def _inspect(client, timeout: float) -> tuple[dict[str, Any], dict[str, Any]]:
    inspector = client.app.control.inspect(timeout=timeout)
    return inspector.stats() or {}, inspector.active() or {}


@router.get("/workers", response_model=list[WorkerInfo], summary="Workers: online, busy, processed, model served")
async def workers(client: ClientDep, timeout_s: float = Query(1.0, gt=0, le=10)) -> list[WorkerInfo]:
    stats, active = await asyncio.to_thread(_inspect, client, timeout_s)
    try:
        models = await ops_state.worker_models(client.redis)
    except (RedisError, ValueError):  # the registry is advisory; inspect already told who is online
        models = {}
    # Workers that went away long ago (pods replaced) are not worth listing.
    recent = {name for name, info in models.items() if time.time() - info.get("updated_at", 0) < 3600}
    result = []
    for name in sorted(set(stats) | recent):
        node_stats = stats.get(name) or {}
        served = models.get(name) or {}
        result.append(
            WorkerInfo(
                name=name,
                online=name in stats,
                active_jobs=len(active.get(name) or []),
                processed=int((node_stats.get("total") or {}).get(TASK_NAME, 0)),
                model_version=served.get("model_version"),
                backend=served.get("backend"),
                concurrency=(node_stats.get("pool") or {}).get("max-concurrency"),
            )
        )
    return result


@router.get("/failures", response_model=list[FailedJob], summary="Recent failed jobs with their errors")
async def failures(client: ClientDep, limit: int = Query(50, ge=1, le=200)) -> list[FailedJob]:
    try:
        return [FailedJob(**entry) for entry in await ops_state.recent_failures(client.redis, limit)]
    except BackendUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None


class RecentChoice(Choice):
    """One reranker choice as a worker recorded it (shared/ops_state.py)."""

    model_config = ConfigDict(extra="allow")
    request_id: str | None = None
    worker: str | None = None
    at: float = Field(description="Unix seconds")


@router.get(
    "/choices",
    response_model=list[RecentChoice],
    summary="The reranker's recent choices: every candidate's scores and the rule that decided, newest first",
)
async def choices(client: ClientDep, limit: int = Query(50, ge=1, le=200)) -> list[RecentChoice]:
    try:
        return [RecentChoice(**entry) for entry in await ops_state.recent_choices(client.redis, limit)]
    except (RedisError, OSError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"Redis unreachable: {exc}") from None
