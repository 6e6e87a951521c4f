"""The inference worker's settings (`python -m services.inference_worker`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from shared.schemas import MAX_CANDIDATES
from shared.settings.base import DEFAULT_MODEL, ComputeSettings, ModelStoreSettings, QueueSettings


class WorkerSettings(QueueSettings, ModelStoreSettings, ComputeSettings):
    """The model a worker serves, how it runs it (backend, lanes, batches) and its Celery pool."""

    model_name_or_path: str = Field(default=DEFAULT_MODEL, description="Hub name or local folder of the model.")
    inference_backend: Literal["auto", "transformers", "onnxruntime", "ctranslate2"] = Field(
        default="auto",
        description="`auto` picks the first that loads of onnxruntime (int8), ctranslate2 (int8), transformers.",
    )
    demo_model_dir: Path | None = Field(
        default=None,  # filled from DATA_DIR by the validator below
        description="Where the bundled demo model is built (the fallback when the hub is unreachable); "
        "unset: DATA_DIR/demo-model.",
    )
    max_turn_tokens: int = Field(default=256, ge=8, description="Longer turns are cut to this many tokens.")
    max_context_tokens: int = Field(default=768, ge=32, description="The prompt keeps at most this many tokens.")
    inference_lowercase_turns: bool = Field(
        default=True, description="Lower-case turns before the model sees them (every training example was)."
    )
    worker_metrics_port: int = Field(default=9101, ge=0, description="Worker's /metrics port (0: off).")
    model_version_db_check_s: float = Field(
        default=60.0, gt=0, description="Workers with no active version in Redis look in the database this often."
    )
    inference_threads: int = Field(
        default=0, ge=0, description="Cores a worker process uses; 0 = TORCH_THREADS if set, else its CPU affinity."
    )
    inference_lanes: int = Field(
        default=0,
        ge=0,
        description="Generations at once on one copy of the weights; 0 = the backend's best (onnxruntime 2, "
        "ctranslate2 one per core).",
    )
    inference_threads_per_lane: int = Field(
        default=0,
        ge=0,
        description="Threads of one generation; 0 = measured best: onnxruntime all the cores; ctranslate2 the cores "
        "divided among the lanes, all of them from 2048 wide.",
    )
    inference_scheduler: Literal["auto", "continuous", "batch"] = Field(
        default="auto",
        description="How jobs share the model: `continuous` = one decoding loop whose cache slots jobs join and "
        "leave at every token (onnxruntime only), `batch` = micro-batches run to the end on lanes; auto = continuous "
        'with onnxruntime, else batch (measured: docs/inference.md, "Continuous batching").',
    )
    inference_slot_tokens: int = Field(
        default=0,
        ge=0,
        le=4096,
        description="Continuous scheduler: tokens one cache slot holds (prompt + reply); 0 = MAX_CONTEXT_TOKENS + 256.",
    )
    inference_spin_wait: bool = Field(
        default=True,
        description="onnxruntime's threads spin between operators (fastest on cores of its own); false on cores "
        "shared with other work (2.3x faster steps there, measured: docs/inference.md).",
    )
    inference_max_batch: int = Field(default=8, ge=1, le=64, description="Most jobs batched on one lane.")
    inference_batch_wait_ms: float = Field(
        default=20.0,
        ge=0,
        le=1000,
        description="A batch starts once no job joined it for this long (a burst is arriving).",
    )
    inference_batch_max_wait_ms: float = Field(
        default=80.0, ge=0, le=5000, description="...and at the latest this long after its first job arrived."
    )
    inference_bulk_lanes: int = Field(
        default=0, ge=0, description="Lanes bulk jobs may hold at once; 0 = all but one (kept for interactive jobs)."
    )
    inference_slots: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Jobs a threads-pool worker takes from the queues at once; 0 = with the continuous scheduler as "
        "many as 16 cache rows hold at a row per candidate (16 // the most candidates a job asks by default; the "
        "cache has this times those candidates rows), else lanes x INFERENCE_MAX_BATCH.",
    )
    inference_quantization: Literal["int8", "float32"] = Field(
        default="int8", description="Weights of the fast backends (float32: for parity checks)."
    )
    inference_kv_cache: Literal["int8", "float16"] = Field(
        default="int8",
        description="Key/value cache of onnxruntime's int8 graphs: int8 with per-channel scales calibrated at "
        "conversion (half of float16's memory per token), or float16 (docs/inference.md).",
    )
    inference_cache_dir: Path | None = Field(
        default=None, description="Converted models of read-only checkpoints; unset: DATA_DIR/converted-models."
    )
    inference_candidates_interactive: int = Field(
        default=1,
        ge=1,
        le=MAX_CANDIDATES,
        description="Candidates sampled per interactive job (one prefill; the reranker chooses) unless the job "
        "says; 4 where the cores allow (docs/inference.md, 'Candidates and the reranker': the cost, the memory).",
    )
    inference_candidates_bulk: int = Field(
        default=1, ge=1, le=MAX_CANDIDATES, description="Candidates sampled per bulk job unless the job says."
    )
    reranker_toxicity_model: str = Field(
        default="cointegrated/rubert-tiny-toxicity",
        description="Sequence classifier scoring candidates' toxicity for the chat's tone (hub name or folder; any "
        "AutoModelForSequenceClassification; the default is 12M parameters, the scraper's BERT-base 180M: "
        "docs/inference.md); empty: none (the reranker then ignores tone).",
    )
    reranker_toxicity_label: str | None = Field(
        default=None,
        description="Name or index of its toxic class; unset: found as for TOXICITY_LABEL (a class named toxic, ...).",
    )
    reranker_toxicity_engine: Literal["onnxruntime", "torch"] = Field(
        default="onnxruntime",
        description="Runs the classifier: onnxruntime (exported once into the conversion cache; no torch in the "
        "worker, about 0.3 GB less) or torch (for a model that does not export).",
    )
    reranker_toxicity_quantization: Literal["int8", "float32"] = Field(
        default="int8",
        description="The classifier's weights as int8 (ONNX Runtime's or torch's dynamic quantization; measured: "
        "docs/inference.md).",
    )
    reranker_threads: int = Field(
        default=1, ge=1, description="Threads of the classifier (the decoding loop keeps the other cores)."
    )
    worker_pool: Literal["auto", "prefork", "threads"] = Field(
        default="auto", description="Celery pool; auto = threads unless INFERENCE_BACKEND=transformers (prefork)."
    )
    worker_concurrency: int = Field(
        default=1,
        ge=1,
        description="Prefork pool: child processes, each with its own copy of the model (threads pool: see "
        "INFERENCE_SLOTS).",
    )

    @model_validator(mode="after")
    def _demo_model_under_data_dir(self) -> Self:
        if self.demo_model_dir is None:
            self.demo_model_dir = self.data_dir / "demo-model"
        return self
