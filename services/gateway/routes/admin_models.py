"""Admin: model versions — list them, see the active one, activate another.

Activation goes through `shared.model_store` (one transaction in the table, then the Redis key
the workers watch). The gateway never loads a model: each worker loads the new version before
its next job and keeps the old one if the new one does not load; such refusals are listed here.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import redis
from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict

from services.gateway.auth import ADMIN_RESPONSES, AdminDep
from services.gateway.deps import SettingsDep
from shared import model_store
from shared.db import make_engine

router = APIRouter(prefix="/admin/models", tags=["admin"], dependencies=[AdminDep], responses=ADMIN_RESPONSES)


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "2ch-2026-11-28",
                    "path": "/models/store/2ch-2026-11-28",
                    "base_model": "Grossmend/rudialogpt3_medium_based_on_gpt2",
                    "data_hash": "3f5a...",
                    "metrics": {"eval_loss_after": 3.1, "perplexity_after": 22.2},
                    "is_active": True,
                    "created_at": "2026-11-28T12:00:00Z",
                    "activated_at": "2026-11-28T12:05:00Z",
                    "load_failure": None,
                }
            ]
        },
    )
    name: str
    path: str
    base_model: str | None
    data_hash: str | None
    metrics: dict[str, Any] | None
    is_active: bool
    created_at: datetime
    activated_at: datetime | None
    load_failure: dict[str, Any] | None = None


class Activated(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "2ch-2026-11-28", "generation": 7}]})
    name: str
    generation: int


def _sync_clients(request: Request, settings) -> tuple:
    if not settings.database_url:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no database configured (DATABASE_URL)")
    state = request.app.state
    if getattr(state, "sync_engine", None) is None:
        state.sync_engine = make_engine(settings.database_url, pool_size=2)
        state.sync_redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
    return state.sync_engine, state.sync_redis


def _listing(engine, client) -> list[ModelVersionOut]:
    failures = model_store.load_failures(client)
    return [
        ModelVersionOut.model_validate(row).model_copy(update={"load_failure": failures.get(row.name)})
        for row in model_store.list_versions(engine)
    ]


@router.get("", response_model=list[ModelVersionOut], summary="Published model versions, oldest first")
async def list_models(request: Request, settings: SettingsDep):
    engine, client = _sync_clients(request, settings)
    return await asyncio.to_thread(_listing, engine, client)


@router.get(
    "/active",
    response_model=ModelVersionOut,
    responses={404: {"description": "No version is active"}},
    summary="The active model version",
)
async def active_model(request: Request, settings: SettingsDep):
    engine, _ = _sync_clients(request, settings)
    row = await asyncio.to_thread(model_store.active_from_db, engine)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no version is active: workers serve MODEL_NAME_OR_PATH")
    return row


@router.post(
    "/{name}/activate",
    response_model=Activated,
    responses={404: {"description": "Unknown version"}},
    summary="Make a version active; workers load it before their next job",
)
async def activate_model(name: str, request: Request, settings: SettingsDep):
    engine, client = _sync_clients(request, settings)
    try:
        active = await asyncio.to_thread(model_store.activate_version, engine, client, name)
    except model_store.VersionNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    return Activated(name=active.name, generation=active.generation)
