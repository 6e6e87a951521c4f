"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.gateway.deps import ClientDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The broker answers and at least one worker is online",
    responses={503: {"description": "Not ready: broker down or no worker"}},
)
async def readyz(client: ClientDep):
    broker = await client.ping_broker()
    workers = await client.workers_alive(timeout_s=1.0) if broker else []
    body = {"broker": broker, "workers": workers}
    if broker and workers:
        return {"status": "ready", **body}
    return JSONResponse({"status": "not ready", **body}, status_code=503)
