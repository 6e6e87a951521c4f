"""The contract between callers (gateway, bot) and the inference workers.

Task `inference.generate` takes `GenerateTask` as keyword arguments and returns `GenerationResult`,
both as plain JSON (Celery's JSON serializer; pickle is refused).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TASK_NAME = "inference.generate"

LengthBucket = Literal["1", "2", "3", "-"]


class GenerationParams(BaseModel):
    """Sampling parameters. Defaults are the ones the base model's authors published for it."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=40, ge=1, le=256, description="Most tokens to generate.")
    # Below 0.05 logits overflow to inf (NaN probabilities); that low is greedy decoding anyway.
    temperature: float = Field(default=1.2, ge=0.05, le=5.0, description="Softmax temperature.")
    top_k: int = Field(default=10, ge=0, le=1000, description="Keep the k likeliest tokens (0 = off).")
    top_p: float = Field(default=0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    repetition_penalty: float = Field(default=1.2, ge=1.0, le=5.0, description="CTRL-style penalty.")
    length: LengthBucket = Field(
        default="2", description="Length bucket of the reply: 1 short, 2 medium, 3 long, - very long."
    )
    seed: int | None = Field(default=None, ge=0, description="Fix the sampling seed (reproducible replies).")


class GenerateTask(BaseModel):
    """Payload of `inference.generate`."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    dialog: list[str] = Field(min_length=1, description="Turns, newest first.")
    params: GenerationParams = Field(default_factory=GenerationParams)
    deadline: float = Field(description="Unix seconds; a job still queued past it is dropped, not generated.")
    enqueued_at: float | None = Field(default=None, description="Unix seconds when the caller enqueued it.")


class GenerationResult(BaseModel):
    text: str
    new_tokens: int
    model_version: str
    queue_ms: int
    generate_ms: int
    worker: str | None = Field(default=None, description="Hostname of the worker that made it.")
