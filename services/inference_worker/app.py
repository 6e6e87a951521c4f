"""The worker's Celery app: `celery -A services.inference_worker.app worker ...`.

Nothing here imports torch: with the prefork pool the parent forks children that each load the
model in `worker_process_init`; with the threads pool (the default for the fast backends,
docs/inference.md) the one process loads it in `worker_init`, before it takes jobs (runtime.py).
"""

from __future__ import annotations

import logging
import os

from celery.signals import setup_logging, worker_init, worker_process_init, worker_process_shutdown, worker_ready

from shared.celery_app import create_celery_app
from shared.logging_setup import configure_from_settings
from shared.settings import WorkerSettings, get_settings

settings = get_settings(WorkerSettings)
app = create_celery_app(settings, name="inference_worker")
app.conf.imports = ["services.inference_worker.tasks", "services.inference_worker.ops_reporting"]
log = logging.getLogger(__name__)


@setup_logging.connect
def _logging(**_kwargs) -> None:
    configure_from_settings(settings)


@worker_init.connect
def _refuse_an_evicting_redis(**_kwargs) -> None:
    """First of the start-up steps: before a model is loaded (minutes), the broker must not evict."""
    from shared.redis_eviction import EvictingRedisError, check_no_eviction

    try:
        check_no_eviction(settings, "inference_worker")
    except EvictingRedisError:
        os._exit(1)  # logged by the check; Celery would only log an exception raised from a signal


@worker_process_init.connect
def _load_model(**_kwargs) -> None:
    from services.inference_worker.runtime import runtime

    try:
        runtime.load(settings)
    except Exception:
        log.exception("model failed to load; this worker child exits")
        os._exit(1)


def uses_prefork(worker) -> bool:
    pool = getattr(worker, "pool_cls", "prefork")
    return "prefork" in (pool if isinstance(pool, str) else f"{pool.__module__}.{pool.__qualname__}").lower()


@worker_init.connect
def _load_model_in_process(sender=None, **_kwargs) -> None:
    """Threads (or solo) pool: no children, the model loads here, before the first job is taken."""
    if sender is None or uses_prefork(sender):
        return
    configure_from_settings(settings)  # Celery sets logging up after this signal; the load logs now
    from services.inference_worker.runtime import runtime

    try:
        runtime.load(settings)
    except Exception:
        log.exception("model failed to load; the worker exits")
        os._exit(1)


@worker_init.connect
def _serve_metrics(**_kwargs) -> None:
    from services.inference_worker import metrics

    try:
        metrics.serve(settings.worker_metrics_port)
    except OSError as exc:  # port taken: a second worker on this host; its children still record
        log.warning("worker metrics port unavailable", extra={"port": settings.worker_metrics_port, "error": str(exc)})


@worker_ready.connect
def _log_ready(sender=None, **_kwargs) -> None:
    """The consumer has started taking jobs: the readiness line operators and the tests wait for
    (a broadcast ping over Redis can go unanswered by a worker that consumes fine)."""
    log.info("worker ready", extra={"node": getattr(sender, "hostname", None)})


@worker_process_shutdown.connect
def _child_exited(pid=None, **_kwargs) -> None:
    from services.inference_worker import metrics

    metrics.process_exited(pid or os.getpid())
