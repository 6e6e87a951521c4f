"""The trainer's settings (`python -m services.trainer`) and the options of a training run.

`TrainerSettings` is what every trainer command reads (the store, the database, where runs go).
`TrainConfig` and `TrainOptions` are the options of `train`: each one is a command-line option
and a `TRAIN_<NAME>` variable (what a Kubernetes Job sets); the option wins over the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, FilePath
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings.base import DEFAULT_BASE_MODEL, CliOption, ComputeSettings, ModelStoreSettings


class TrainerSettings(ModelStoreSettings, ComputeSettings):
    """Where training runs go; the store, the database and Redis come from the shared groups."""

    train_runs_dir: Path | None = Field(
        default=None, description="Where training runs (checkpoints, reports) go; unset: DATA_DIR/training-runs."
    )

    @property
    def runs_path(self) -> Path:
        """TRAIN_RUNS_DIR, or DATA_DIR/training-runs."""
        return Path(self.train_runs_dir or self.data_dir / "training-runs")


class TrainConfig(BaseSettings):
    """Everything that shapes a run; saved in run.json and in the published version's params."""

    model_config = SettingsConfigDict(
        env_prefix="TRAIN_", env_file=".env", env_file_encoding="utf-8", extra="ignore", validate_by_name=True
    )

    model: str = Field(
        default=DEFAULT_BASE_MODEL,
        validation_alias="TRAIN_MODEL_NAME_OR_PATH",
        description="Model to fine-tune: a GPT-2-family causal LM, hub name or folder.",
    )
    epochs: float = Field(default=1.0, ge=0, description="Epochs over the training examples.")
    max_steps: int = Field(default=-1, description="> 0: stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(default=8, ge=1, description="Examples per device and step.")
    eval_batch_size: int | None = Field(default=None, ge=1, description="Evaluation batch; unset: the batch size.")
    grad_accum: int = Field(default=1, ge=1, description="Gradient accumulation steps.")
    learning_rate: Annotated[float, CliOption("--lr")] = Field(
        default=5e-5, ge=0, validation_alias="TRAIN_LR", description="Peak learning rate (linear decay)."
    )
    warmup: float = Field(default=0.0, ge=0, description="Warm-up: < 1 a ratio of the steps, >= 1 steps.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    max_length: int = Field(default=512, ge=16, description="Tokens per example (oldest turns dropped first).")
    max_turn_tokens: int = Field(default=256, ge=4, description="Longer turns are cut to this many tokens.")
    eval_fraction: float = Field(default=0.05, ge=0.001, le=0.5, description="Share of the examples held out.")
    max_eval: int = Field(default=1000, ge=1, description="At most this many held-out examples.")
    seed: int = Field(default=42, description="Seed of the split, the shuffling and the report's samples.")
    reply_only: Annotated[bool, CliOption("--reply-only/--all-tokens")] = Field(
        default=True, description="Loss on the reply's tokens only (else on every token of the example)."
    )
    fp16: bool = Field(default=False, description="Mixed precision fp16 (GPU).")
    bf16: bool = Field(default=False, description="Mixed precision bf16 (Ampere+ GPU, recent CPUs).")
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations: less memory, slower.")
    logging_steps: int = Field(default=10, ge=1, description="Log the loss every N steps.")
    eval_steps: int | None = Field(default=None, ge=1, description="Evaluate every N steps; unset: each epoch.")
    save_steps: int | None = Field(
        default=None, ge=1, description="Checkpoint every N steps (needed for --resume); unset: no checkpoints."
    )
    save_total_limit: int = Field(default=2, ge=1, description="Checkpoints kept.")
    group_by_length: bool = Field(default=False, description="Batch examples of similar length.")
    samples: Annotated[bool, CliOption("--samples/--no-samples")] = Field(
        default=True, description="Sample replies to fixed prompts for the report."
    )

    def public(self) -> dict[str, Any]:
        """The run's parameters as recorded (these fields only, by their own names)."""
        return self.model_dump(include=set(TrainConfig.model_fields))


class TrainOptions(TrainConfig):
    """`train`: the run's parameters, where its dialogs come from, and what becomes of the result."""

    jsonl: FilePath | None = Field(default=None, description="Exported dialogs (JSONL) to train on.")
    from_db: bool = Field(default=False, description="Read the dialogs from the database instead.")
    quantile: float = Field(
        default=0.75, ge=0, lt=1, description="Dialogs from the database: toxicity at or above this quantile (0: all)."
    )
    limit: int | None = Field(default=None, ge=1, description="At most this many dialogs (the most toxic).")
    feedback: int | None = Field(
        default=None,
        ge=1,
        description="Add the bot's replies people liked (at least this many more likes than dislikes; only from "
        "chats with /learn on) as extra examples, the reply after the messages it answered.",
    )
    run_dir: Path | None = Field(default=None, description="Run folder; unset: TRAIN_RUNS_DIR/<timestamp>.")
    resume: bool = Field(default=False, description="Continue RUN_DIR from its last checkpoint and data snapshot.")
    publish: str | None = Field(default=None, description="Publish the result as this version name.")
    activate: bool = Field(default=False, description="With a version name to publish: make it the served version.")
    generation_defaults: str | None = Field(
        default=None,
        description="Sampling defaults the version is served with, as JSON (e.g. '{\"top_k\": 40}'); "
        "unset: the project's defaults.",
    )
