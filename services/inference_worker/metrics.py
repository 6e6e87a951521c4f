"""Worker metrics, in prometheus_client's multiprocess mode: every prefork child writes its
samples to files in PROMETHEUS_MULTIPROC_DIR and the parent serves them all on one port.

The directory must be set before prometheus_client is imported anywhere in the process:
`__main__.py` sets it (and wipes it, so samples of a previous run do not linger) first thing.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

from shared.schemas import ErrorKind

log = logging.getLogger(__name__)

GENERATION_SECONDS = Histogram(
    "dvach_worker_generation_seconds",
    "Time to generate one reply (prompt to cut text), in seconds",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
QUEUE_WAIT_SECONDS = Histogram(
    "dvach_worker_queue_wait_seconds",
    "Time a job waited in the queue before a worker took it, in seconds",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKENS_PER_SECOND = Histogram(
    "dvach_worker_tokens_per_second",
    "New tokens per second of each generation",
    buckets=(1, 2, 5, 10, 20, 40, 80, 160, 320, 640),
)
GENERATED_TOKENS = Counter("dvach_worker_generated_tokens_total", "New tokens generated")
JOBS = Counter("dvach_worker_jobs_total", "Jobs finished, by outcome", ["outcome"])
FAILURES = Counter("dvach_worker_failures_total", "Failed jobs, by exception kind", ["kind"])
# Known label values start at 0, so dashboards and alerts see the series before the first event.
for _outcome in ("ok", "failed"):
    JOBS.labels(_outcome)
for _kind in ErrorKind:
    FAILURES.labels(_kind.value)

CANDIDATES = Histogram("dvach_worker_candidates_per_job", "Candidates sampled per job", buckets=(1, 2, 3, 4, 5, 6, 8))
REJECTIONS = Counter("dvach_worker_rejections_total", "Candidates failing a hard rule of the reranker", ["reason"])
CHOSEN_TOXICITY = Histogram(
    "dvach_worker_chosen_toxicity",
    "Toxicity of the chosen reply, by the chat's tone (jobs scored by a classifier)",
    ["tone"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
CHOICES = Counter("dvach_worker_choices_total", "Reranker choices, by the rule that decided", ["rule"])
for _reason in ("empty", "echo", "repeat", "loop", "garbage"):  # reranker.REJECTION_REASONS
    REJECTIONS.labels(_reason)

MODEL_LOAD_SECONDS = Gauge(
    "dvach_worker_model_load_seconds", "Time the last model load took, in seconds", multiprocess_mode="livemax"
)
MODEL_INFO = Gauge(
    "dvach_worker_model_info",
    "The model version and backend a worker process serves (value 1)",
    ["model_version", "backend"],
    multiprocess_mode="livemax",
)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve every process's samples from the parent process."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR") or port == 0:
        return
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)
    log.info("worker metrics served", extra={"port": port})


def process_exited(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


def model_loaded(version: str, backend: str, seconds: float, previous: tuple[str, str] | None = None) -> None:
    if previous:
        MODEL_INFO.labels(*previous).set(0)
    MODEL_INFO.labels(version, backend).set(1)
    MODEL_LOAD_SECONDS.set(seconds)
