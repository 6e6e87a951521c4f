"""The model of this worker process: loaded once, in the child, before its first job.

Torch and OpenMP are never touched in the parent before fork (FACTS.md); `load()` runs from
Celery's `worker_process_init` signal in each child, sets the thread count, loads, and warms up.
"""

from __future__ import annotations

import logging
import os
import time

from shared.schemas import GenerationParams
from shared.settings import Settings

from services.inference_worker.backends import Backend, load_backend
from services.inference_worker.generation import Generator
from services.inference_worker.model_source import ModelSource, resolve_model

log = logging.getLogger(__name__)


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

    def load(self, settings: Settings) -> None:
        import torch

        threads = settings.torch_threads or len(os.sched_getaffinity(0))
        torch.set_num_threads(threads)
        started = time.perf_counter()
        source = resolve_model(settings)
        backend = load_backend(settings.inference_backend, source.path)
        generator = Generator(
            backend, max_turn_tokens=settings.max_turn_tokens, max_context_tokens=settings.max_context_tokens
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
                "torch_threads": threads,
                "load_s": round(time.perf_counter() - started, 2),
            },
        )


runtime = ModelRuntime()
