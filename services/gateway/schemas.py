"""Request and response bodies of the gateway's public API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas import GenerationParams, GenerationResult, Tone


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
    tone: Tone = Field(
        default="normal", description="Which candidate to choose by toxicity: soft, normal or sharp (under a ceiling)."
    )
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


class ValidationProblem(BaseModel):
    loc: list[str | int] = Field(description="Where: `body`, then the path into it (e.g. body, dialog, 0).")
    msg: str = Field(description="What is wrong.")
    type: str = Field(description="pydantic's error type (e.g. `value_error`, `missing`).")


class ValidationErrorResponse(BaseModel):
    """The 422 body: every problem found, each with where it is and what it is (the input is not
    echoed back)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"detail": [{"loc": ["body", "dialog"], "msg": "the dialog is empty", "type": "value_error"}]}]
        }
    )
    detail: list[ValidationProblem]
