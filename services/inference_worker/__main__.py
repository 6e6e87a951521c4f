"""`python -m services.inference_worker`: a Celery worker on both queues, interactive first.

One model copy per process. With a fast backend (onnxruntime, the default, or ctranslate2) the
process runs a threads pool of INFERENCE_SLOTS jobs that share the model (on parallel lanes, or
in the continuous scheduler's cache slots: INFERENCE_SCHEDULER); with transformers one prefork
child. Scale with more processes or pods.
Extra arguments pass through to `celery worker` (e.g. `--concurrency 2 -n w2@%h`).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from shared.celery_app import QUEUES
from shared.settings import WorkerSettings


def prepare_metrics_dir() -> None:
    """prometheus_client picks its multiprocess mode when it is first imported: set the directory
    before anything imports it, and empty it (samples of an earlier run must not linger)."""
    path = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", f"/tmp/dvach-worker-metrics-{os.getpid()}"))
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def job_slots(settings: WorkerSettings) -> int:
    """INFERENCE_SLOTS. By default, with the continuous scheduler, as many jobs as its 16 cache
    rows hold with a row per candidate: the worker takes from Redis only jobs it can start at the
    next token, and the rest stay in the queue, where autoscaling sees them. With the batch
    scheduler, enough jobs for every lane to fill a batch, and as many again waiting to form the
    next one (docs/deploy.md, "Load test")."""
    if settings.inference_slots:
        return settings.inference_slots
    from services.inference_worker.backends import planned_lanes
    from services.inference_worker.decoding_loop import DEFAULT_SLOTS
    from services.inference_worker.runtime import backend_options, max_candidates, scheduler_kind

    if scheduler_kind(settings, settings.inference_backend) == "continuous":
        # The cache's 16 rows hold this many jobs of the default candidates each (4: 4 jobs).
        return max(1, DEFAULT_SLOTS // max_candidates(settings))

    return max(1, planned_lanes(settings.inference_backend, backend_options(settings)) * settings.inference_max_batch)


def pool_args(settings: WorkerSettings) -> list[str]:
    """Threads pool for a backend with lanes (several jobs share one model in one process),
    prefork with WORKER_CONCURRENCY children for transformers (docs/inference.md, "Concurrency")."""
    pool = settings.worker_pool
    if pool == "auto":
        pool = "prefork" if settings.inference_backend == "transformers" else "threads"
    if pool == "threads":
        return ["--pool", "threads", "--concurrency", str(job_slots(settings))]
    return ["--pool", "prefork", "--concurrency", str(settings.worker_concurrency)]


def main() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    prepare_metrics_dir()
    from services.inference_worker.app import app, settings

    # Celery's start-up banner is third-party chatter like its INFO lines: shown with LOG_LEVEL=DEBUG.
    quiet = [] if settings.log_level.upper() == "DEBUG" else ["--quiet"]
    argv = [
        *quiet,
        "worker",
        *pool_args(settings),
        "--queues",
        ",".join(QUEUES),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv + sys.argv[1:])


if __name__ == "__main__":
    main()
