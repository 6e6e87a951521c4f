"""`POST /v1/replies` and `GET /v1/jobs/{job_id}`: replies through the queue."""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from services.gateway.auth import Responses
from services.gateway.deps import ClientDep, SettingsDep
from services.gateway.schemas import (
    ErrorResponse,
    JobAccepted,
    JobStatusResponse,
    ReplyRequest,
    ReplyResponse,
    ValidationErrorResponse,
)
from shared.celery_app import QUEUE_INTERACTIVE
from shared.generation_client import BackendUnavailable, GenerationClient, JobFailed, JobTimeout
from shared.schemas import ErrorKind
from shared.settings import GatewaySettings

router = APIRouter(prefix="/v1", tags=["replies"])

REPLIES = Counter("dvach_gateway_replies_total", "Reply requests by outcome", ["outcome"])

_ERRORS: Responses = {
    400: {"description": "The body is not parseable (not JSON, broken encoding)", "model": ErrorResponse},
    413: {"description": "The body is larger than MAX_BODY_BYTES", "model": ErrorResponse},
    422: {"description": "The dialog or the parameters are invalid", "model": ValidationErrorResponse},
    502: {"description": "The worker failed to make a reply", "model": ErrorResponse},
    503: {"description": "No worker answered in time (see Retry-After)", "model": ErrorResponse},
}


def _invalid(loc: list, message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[{"loc": loc, "msg": message, "type": "value_error"}]
    )


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_dialog(body: ReplyRequest, max_turns: int, max_chars: int) -> list[str]:
    if not body.dialog:
        raise _invalid(["body", "dialog"], "the dialog is empty: send at least one turn")
    if len(body.dialog) > max_turns:
        raise _invalid(["body", "dialog"], f"too many turns: {len(body.dialog)}, at most {max_turns}")
    turns = []
    for i, turn in enumerate(body.dialog):
        text = turn.strip()
        if not text:
            raise _invalid(["body", "dialog", i], "a turn is empty or only whitespace")
        if not text.isascii() and _has_lone_surrogate(text):
            raise _invalid(["body", "dialog", i], "a turn holds a lone UTF-16 surrogate (broken text encoding)")
        if len(text) > max_chars:
            raise _invalid(["body", "dialog", i], f"turn is {len(text)} characters long, at most {max_chars}")
        turns.append(text)
    return turns


def _unavailable(message: str, retry_after: float) -> JSONResponse:
    return JSONResponse(
        {"detail": message}, status_code=503, headers={"Retry-After": str(max(1, math.ceil(retry_after)))}
    )


async def _enqueue(
    client: GenerationClient, turns: list[str], body: ReplyRequest, settings: GatewaySettings, timeout: float
) -> str | JSONResponse:
    """The job id, or the 503 to answer when the queue is too long or unreachable."""
    try:
        # Backpressure: a queue this long will not be served within anyone's timeout.
        waiting = (await client.queue_depths())[QUEUE_INTERACTIVE]
        if waiting >= settings.max_queue_depth:
            REPLIES.labels("overloaded").inc()
            return _unavailable(f"overloaded: {waiting} jobs already waiting", min(timeout, 30))
        return await client.submit(turns, body.params, priority="interactive", timeout_s=timeout, tone=body.tone)
    except BackendUnavailable:
        REPLIES.labels("backend_unavailable").inc()
        return _unavailable("the queue is unreachable, try again shortly", 5)


async def _await_reply(client: GenerationClient, job_id: str, timeout: float) -> ReplyResponse | JSONResponse:
    """The reply, or the 503 to answer (no reply in time) or a 502 (the worker failed)."""
    try:
        result = await client.wait(job_id, timeout)
    except JobTimeout:
        REPLIES.labels("timeout").inc()
        return _unavailable(f"no worker made a reply within {timeout:g}s", min(timeout, 30))
    except BackendUnavailable:
        REPLIES.labels("backend_unavailable").inc()
        return _unavailable("the result backend is unreachable, try again shortly", 5)
    except JobFailed as exc:
        if exc.kind == ErrorKind.DEADLINE_EXPIRED:
            REPLIES.labels("timeout").inc()
            return _unavailable("the job waited in the queue past its deadline", min(timeout, 30))
        REPLIES.labels("failed").inc()
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, detail=f"the worker failed: {exc.kind}: {exc.message}"
        ) from None
    REPLIES.labels("ok").inc()
    return ReplyResponse(job_id=job_id, **result.model_dump())


@router.post(
    "/replies",
    response_model=ReplyResponse,
    responses={202: {"model": JobAccepted, "description": "Accepted (wait=false)"}, **_ERRORS},
    summary="Generate a reply to a dialog",
)
async def create_reply(body: ReplyRequest, client: ClientDep, settings: SettingsDep) -> ReplyResponse | JSONResponse:
    """Queue a reply to `dialog` (newest first). With `wait` (the default) the reply comes back in
    the response; otherwise 202 and a job id to poll."""
    turns = _check_dialog(body, settings.max_dialog_turns, settings.max_turn_chars)
    timeout = body.timeout_s or settings.reply_timeout_s
    job_id = await _enqueue(client, turns, body, settings, timeout)
    if isinstance(job_id, JSONResponse):
        return job_id
    if not body.wait:
        REPLIES.labels("accepted").inc()
        return JSONResponse(JobAccepted(job_id=job_id, status_url=f"/v1/jobs/{job_id}").model_dump(), status_code=202)
    return await _await_reply(client, job_id, timeout)


@router.get(
    "/jobs/{job_id}",
    response_model=JobStatusResponse,
    responses={404: {"description": "No such job (or it expired)", "model": ErrorResponse}, 503: _ERRORS[503]},
    summary="Status and result of a job",
)
async def get_job(job_id: str, client: ClientDep):
    """A job's state: queued, running, done (with the result) or failed (with the error)."""
    try:
        if not await client.is_known(job_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job_id!r} (unknown or expired)")
        job = await client.status(job_id)
    except BackendUnavailable:
        return _unavailable("the result backend is unreachable", 5)
    if job.state == "SUCCESS":
        return JobStatusResponse(job_id=job_id, status="done", result=job.result)
    if job.ready:
        return JobStatusResponse(job_id=job_id, status="failed", error=f"{job.error_kind}: {job.error}")
    return JobStatusResponse(job_id=job_id, status="running" if job.state == "STARTED" else "queued")
