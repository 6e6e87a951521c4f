"""The contract between callers (gateway, bot) and the inference workers.

Task `inference.generate` takes `GenerateTask` as keyword arguments and returns `GenerationResult`,
both as plain JSON (Celery's JSON serializer; pickle is refused).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

TASK_NAME = "inference.generate"


class ErrorKind(StrEnum):
    """Why a generation job failed: the name of the exception Celery stored as the job's failure
    (what `JobFailed.kind` holds for a caller, and the `kind` label of the worker's failure metric)."""

    DEADLINE_EXPIRED = "DeadlineExpired"  # the caller's deadline passed while the job was queued
    EMPTY_GENERATION = "EmptyGeneration"  # the model gave only empty replies
    SOFT_TIME_LIMIT = "SoftTimeLimitExceeded"  # TASK_SOFT_TIME_LIMIT_S
    TIME_LIMIT = "TimeLimitExceeded"  # TASK_TIME_LIMIT_S: the child was killed
    WORKER_LOST = "WorkerLostError"  # the worker died mid-job


LengthBucket = Literal["1", "2", "3", "-"]


class GenerationParams(BaseModel):
    """Sampling parameters.

    A caller sets only what it wants to change: a job carries the fields its caller set
    (`model_fields_set`), and the worker fills the rest from the served model version's own
    defaults (`version.json` "generation"), else from the defaults here, which are the ones the
    published 2ch model's author served it with (the seed's bot, `BlackSamorez/ebanko`
    `app/app/Ebanko.py`: 48 new tokens, sampling at temperature 1.0 with transformers' default
    top-k 50 and top-p 1.0, repetition penalty 10, `<pad>` banned). docs/architecture.md says why.
    """

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=48, ge=1, le=256, description="Most tokens to generate.")
    # Below 0.05 logits overflow to inf (NaN probabilities); that low is greedy decoding anyway.
    temperature: float = Field(default=1.0, ge=0.05, le=5.0, description="Softmax temperature.")
    top_k: int = Field(default=50, ge=0, le=1000, description="Keep the k likeliest tokens (0 = off).")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    repetition_penalty: float = Field(
        default=10.0, ge=1.0, le=20.0, description="CTRL-style penalty on tokens of the prompt and the reply so far."
    )
    length: LengthBucket = Field(
        default="2", description="Length bucket of the reply: 1 short, 2 medium, 3 long, - very long."
    )
    seed: int | None = Field(default=None, ge=0, description="Fix the sampling seed (reproducible replies).")


class GenerateTask(BaseModel):
    """Payload of `inference.generate`."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    dialog: list[str] = Field(min_length=1, description="Turns, newest first.")
    params: GenerationParams = Field(
        default_factory=GenerationParams, description="Only the fields the caller set; the worker fills the rest."
    )
    deadline: float = Field(description="Unix seconds; a job still queued past it is dropped, not generated.")
    enqueued_at: float | None = Field(default=None, description="Unix seconds when the caller enqueued it.")

    @field_serializer("params")
    def _only_set_params(self, params: GenerationParams) -> dict:
        # Unset fields stay unset on the wire, so that the served model's own defaults apply.
        return params.model_dump(mode="json", exclude_unset=True)

    def with_defaults(self, defaults: dict) -> GenerationParams:
        """The parameters to generate with: the caller's, else `defaults` (the model's), else ours."""
        return GenerationParams.model_validate({**defaults, **self.params.model_dump(exclude_unset=True)})


class GenerationResult(BaseModel):
    text: str
    new_tokens: int
    model_version: str
    queue_ms: int
    generate_ms: int
    worker: str | None = Field(default=None, description="Hostname of the worker that made it.")
