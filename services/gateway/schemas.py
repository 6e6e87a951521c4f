"""Request and response bodies of the gateway's public API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas import GenerationParams, GenerationResult


class ReplyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "dialog": ["а ты чего не спишь", "сижу на двачах"],
                    "params": {"temperature": 1.0, "max_new_tokens": 40, "length": "2"},
                }
            ]
        },
    )

    dialog: list[str] = Field(description="Turns of the conversation, newest first; the reply answers dialog[0].")
    params: GenerationParams = Field(default_factory=GenerationParams)
    wait: bool = Field(default=True, description="false: return 202 and a job id at once, poll /v1/jobs/{id}.")
    timeout_s: float | None = Field(
        default=None, ge=1, le=300, description="How long to wait; default REPLY_TIMEOUT_S."
    )


class ReplyResponse(GenerationResult):
    job_id: str


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class JobStatusResponse(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    result: GenerationResult | None = None
    error: str | None = None


class ErrorResponse(BaseModel):
    detail: str
