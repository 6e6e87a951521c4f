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
# Where in the toxicity range the chosen reply sits (docs/inference.md, "Reranker"); per chat.
Tone = Literal["soft", "normal", "sharp"]
TONES: tuple[Tone, ...] = ("soft", "normal", "sharp")
MAX_CANDIDATES = 8
MAX_RECENT_REPLIES = 16


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
    candidates: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CANDIDATES,
        description="Replies sampled for the reranker to choose from; unset: the worker's default for the job's "
        "queue (INFERENCE_CANDIDATES_INTERACTIVE / _BULK).",
    )


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
    tone: Tone = Field(default="normal", description="Which acceptable candidate to choose by toxicity.")
    recent_replies: list[str] = Field(
        default_factory=list,
        max_length=MAX_RECENT_REPLIES,
        description="The bot's last replies in this chat, newest first: a candidate repeating one is rejected.",
    )

    @field_serializer("params")
    def _only_set_params(self, params: GenerationParams) -> dict:
        # Unset fields stay unset on the wire, so that the served model's own defaults apply.
        return params.model_dump(mode="json", exclude_unset=True)

    def with_defaults(self, defaults: dict) -> GenerationParams:
        """The parameters to generate with: the caller's, else `defaults` (the model's), else ours."""
        return GenerationParams.model_validate({**defaults, **self.params.model_dump(exclude_unset=True)})


class CandidateScores(BaseModel):
    """One sampled candidate and what the reranker made of it (services/inference_worker/reranker.py)."""

    text: str
    toxicity: float | None = Field(description="Probability of the toxic class; None without a classifier.")
    echo: float = Field(description="Share of its word n-grams found in one turn of the dialog (0..1).")
    distinct2: float = Field(description="Distinct word bigrams / bigrams (1: no repetition inside it).")
    recent: float = Field(description="Highest similarity to one of the chat's recent replies (0..1).")
    stock: float = Field(
        default=0.0, description="Highest similarity to another candidate of the job: the model's stock phrase (0..1)."
    )
    length_fit: float = Field(description="1 when its length is in the asked bucket, less the further off.")
    garbage: float = Field(description="0 clean .. 1 garbage: too little text, no Cyrillic, unbalanced quotes.")
    quality: float = Field(description="The soft scores combined (higher is better).")
    rejected: list[str] = Field(
        default_factory=list, description="Hard rules it failed (never chosen while another passed)."
    )


class Choice(BaseModel):
    """Which candidate became the reply, and why."""

    index: int = Field(description="Index of the chosen candidate in `candidates`.")
    tone: Tone
    rule: str = Field(description="What decided: single, tone_soft, tone_normal, tone_sharp, sharp_ceiling, ...")
    candidates: list[CandidateScores]


class GenerationResult(BaseModel):
    text: str
    new_tokens: int = Field(description="Tokens generated for this job: every candidate and every attempt.")
    model_version: str
    queue_ms: int
    generate_ms: int
    worker: str | None = Field(default=None, description="Hostname of the worker that made it.")
    choice: Choice | None = Field(default=None, description="The candidates and the reranker's choice.")

    @property
    def tone(self) -> Tone | None:
        return self.choice.tone if self.choice else None
