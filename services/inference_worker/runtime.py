"""The model of this worker process: loaded once, in the child, before its first job.

Torch and OpenMP are never touched in the parent before fork; with the prefork pool
`load()` runs from Celery's `worker_process_init` signal in each child, with the threads pool from
`worker_init` in the one process (no fork). The backend sets its thread counts, loads, and warms up.
Jobs reach the generator through the scheduler (scheduler.py), which runs several at once when the
backend has more than one lane.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from services.inference_worker.backends import Backend, BackendOptions, load_backend
from services.inference_worker.decoding_loop import DecodingLoop, supports_slots
from services.inference_worker.generation import Generator
from services.inference_worker.model_source import ModelSource, resolve_model
from services.inference_worker.reranker import Reranker
from services.inference_worker.scheduler import Scheduler
from shared.schemas import GenerateTask, GenerationParams
from shared.settings import WorkerSettings as Settings
from shared.toxicity import OnnxToxicityScorer, ToxicityScorer

log = logging.getLogger(__name__)


def conversion_cache(settings: Settings) -> Path:
    """Where converted models go: the generator's int8 graphs and the reranker's classifier."""
    return settings.inference_cache_dir or settings.data_dir / "converted-models"


def backend_options(settings: Settings) -> BackendOptions:
    """The `# --- inference` settings as the backend sees them (docs/inference.md)."""
    return BackendOptions(
        threads=settings.inference_threads or settings.torch_threads,
        lanes=settings.inference_lanes,
        threads_per_lane=settings.inference_threads_per_lane,
        quantization=settings.inference_quantization,
        kv_cache=settings.inference_kv_cache,
        cache_dir=conversion_cache(settings),
        spin_wait=settings.inference_spin_wait,
    )


def backend_threads(backend: Backend) -> int:
    """Threads each lane's run uses (the engines name it differently)."""
    per_lane: int | None = getattr(backend, "threads_per_lane", None)
    threads: int = getattr(backend, "threads", 0)
    return per_lane or threads


class ModelRuntime:
    def __init__(self) -> None:
        self.source: ModelSource | None = None
        self.backend: Backend | None = None
        self.generator: Generator | None = None

    @property
    def loaded(self) -> bool:
        return self.generator is not None

    @property
    def version(self) -> str:
        return self.source.version if self.source else "none"

    def params_for(self, task: GenerateTask) -> GenerationParams:
        """The job's sampling parameters: what its caller set, else the served version's defaults."""
        defaults = self.source.generation_defaults if self.source else {}
        try:
            return task.with_defaults(defaults)
        except ValidationError as exc:  # a version's defaults out of range: ours, and say so once per load
            if self.source is not None and not getattr(self, "_warned_defaults", False):
                self._warned_defaults = True
                log.warning(
                    "the model version's generation defaults are invalid; using the project's",
                    extra={"model_version": self.version, "error": str(exc)[:300]},
                )
            return task.with_defaults({})

    def load(self, settings: Settings) -> None:
        from services.inference_worker.model_versions import load_active_version

        if max_candidates(settings) > 1:
            reranking.scorer(settings)  # the reranker's classifier too, before the first job (not on its time)
        if load_active_version(self, settings):  # a published version is active: serve it (model_versions.py)
            return
        started = time.perf_counter()
        source = resolve_model(settings)
        # Thread counts go to the backend, which sets them itself (torch only for transformers).
        backend = load_backend(settings.inference_backend, source.path, backend_options(settings))
        threads = backend_threads(backend)
        generator = Generator(
            backend,
            max_turn_tokens=settings.max_turn_tokens,
            max_context_tokens=settings.max_context_tokens,
            lowercase=settings.inference_lowercase_turns,
        )
        # Warm-up: the first call allocates buffers; do it before taking real jobs.
        generator.backend.continue_prompts([backend.encode("|0|1|привет")], GenerationParams(max_new_tokens=2))
        self.source, self.backend, self.generator = source, backend, generator
        from services.inference_worker import metrics
        from services.inference_worker.ops_reporting import report_model

        report_model(source.version, backend.name)
        metrics.model_loaded(source.version, backend.name, time.perf_counter() - started)
        log.info(
            "model loaded",
            extra={
                "model_version": source.version,
                "path": str(source.path),
                "backend": backend.name,
                "threads": threads,
                "lanes": backend.lanes,
                "generation_defaults": source.generation_defaults or "project defaults",
                "load_s": round(time.perf_counter() - started, 2),
            },
        )


def load_scorer(settings: Settings) -> ToxicityScorer | OnnxToxicityScorer:
    """The reranker's classifier as the settings ask (RERANKER_TOXICITY_*; docs/inference.md)."""
    if settings.reranker_toxicity_engine == "onnxruntime":
        return OnnxToxicityScorer(
            settings.reranker_toxicity_model,
            cache_dir=conversion_cache(settings),
            label=settings.reranker_toxicity_label,
            threads=settings.reranker_threads,
            quantization=settings.reranker_toxicity_quantization,
        )
    return ToxicityScorer(
        settings.reranker_toxicity_model,
        label=settings.reranker_toxicity_label,
        torch_threads=settings.reranker_threads,
        quantization=settings.reranker_toxicity_quantization,
    )


def max_candidates(settings: Settings) -> int:
    """The most candidates a job asks by default (a cache row each; above 1 the reranker's classifier loads)."""
    return max(settings.inference_candidates_interactive, settings.inference_candidates_bulk)


class RerankerRuntime:
    """The reranker of this process (reranker.py), its toxicity classifier loaded on first use
    (shared/toxicity.py); a classifier that does not load is logged once and the reranker runs
    without it (toxicity None, tone ignored: rule `quality`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scorer: ToxicityScorer | OnnxToxicityScorer | None = None
        self._tried: str | None = None

    def scorer(self, settings: Settings) -> ToxicityScorer | OnnxToxicityScorer | None:
        name = settings.reranker_toxicity_model
        with self._lock:
            if self._tried != name:
                self._tried, self._scorer = name, None
                if name:
                    started = time.perf_counter()
                    try:
                        self._scorer = load_scorer(settings)
                        log.info(
                            "toxicity classifier loaded",
                            extra={
                                "model": name,
                                "engine": settings.reranker_toxicity_engine,
                                "load_s": round(time.perf_counter() - started, 2),
                            },
                        )
                    except Exception as exc:  # noqa: BLE001 - any load failure: rank without toxicity, say so
                        log.warning(
                            "toxicity classifier did not load; ranking without toxicity",
                            extra={"model": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"},
                        )
            return self._scorer

    def reranker(self, settings: Settings, generator: Generator, candidates: int = 2) -> Reranker:
        """The reranker for a job of `candidates` (one candidate needs no classifier: none is loaded)."""
        scorer = self.scorer(settings) if candidates > 1 else None
        return Reranker(generator.codec.count_tokens, scorer.score if scorer is not None else None)


runtime = ModelRuntime()
reranking = RerankerRuntime()
_schedulers: dict[int, Scheduler | DecodingLoop] = {}  # by process id: a forked child makes its own
_scheduler_lock = threading.Lock()


# What INFERENCE_SCHEDULER=auto means (docs/inference.md, "Continuous batching": measured here).
AUTO_SCHEDULER = "continuous"


def scheduler_kind(settings: Settings, backend_kind: str) -> str:
    """ "continuous" or "batch": the setting, where the backend supports it (`backend_kind` is the
    loaded backend's name, or the planned one before loading)."""
    kind = AUTO_SCHEDULER if settings.inference_scheduler == "auto" else settings.inference_scheduler
    if kind == "continuous" and backend_kind not in ("onnxruntime", "auto"):
        return "batch"
    return kind


def make_scheduler(generator, backend: Backend, settings: Settings) -> Scheduler | DecodingLoop:
    """The scheduler INFERENCE_SCHEDULER names, configured by the INFERENCE_* settings."""
    if scheduler_kind(settings, backend.name) == "continuous" and supports_slots(backend):
        from services.inference_worker.__main__ import job_slots

        # A cache row per candidate: the jobs the worker takes (job_slots: 16 rows' worth by
        # default) times the most candidates a job asks by default; every job it holds can start
        # at the next token.
        return DecodingLoop(
            generator,
            slots=job_slots(settings) * max_candidates(settings),
            slot_tokens=settings.inference_slot_tokens or None,
        )
    return Scheduler(
        generator,
        lanes=backend.lanes,
        max_batch=settings.inference_max_batch,
        batch_wait_s=settings.inference_batch_wait_ms / 1000,
        batch_max_wait_s=settings.inference_batch_max_wait_ms / 1000,
        bulk_lanes=settings.inference_bulk_lanes or None,
        # Lanes that split the cores take a burst evenly; lanes that each use all of them fill one first.
        spread=backend.lanes * backend_threads(backend) <= backend.options.cores,
    )


def scheduler_for(runtime: ModelRuntime, settings: Settings) -> Scheduler | DecodingLoop:
    """This process's scheduler (made on first use, after the model loaded).

    It reads `runtime.generator` for each batch, so a model version switched in by
    model_versions.py serves the next batch, while batches in flight finish on the old one.
    """
    with _scheduler_lock:
        pid = os.getpid()
        if pid not in _schedulers:
            if runtime.backend is None:
                raise RuntimeError("the model is not loaded: runtime.load() before the first job")
            _schedulers[pid] = make_scheduler(lambda: runtime.generator, runtime.backend, settings)
        return _schedulers[pid]
