"""What a worker tells operators through Redis (shared/ops_state.py): the model each worker
serves, and the jobs that failed. Advisory: a Redis hiccup here never fails a job."""

from __future__ import annotations

import logging
import os
import socket
from functools import cache

import redis
from celery.signals import celeryd_after_setup, task_failure

from shared import ops_state
from shared.schemas import TASK_NAME
from shared.settings import WorkerSettings, get_settings

log = logging.getLogger(__name__)

# The Celery node name (e.g. "worker@pod-1"), set in the parent before fork; children inherit it.
_node = {"name": f"celery@{socket.gethostname()}"}


@cache
def _redis() -> redis.Redis:
    """One client per process, made on first use (after fork in a prefork child)."""
    url = get_settings(WorkerSettings).required_redis_url
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


@celeryd_after_setup.connect
def _remember_node(sender: str, **_kwargs: object) -> None:
    _node["name"] = sender


def report_model(model_version: str, backend: str) -> None:
    try:
        ops_state.publish_worker_model(
            _redis(), _node["name"], {"model_version": model_version, "backend": backend, "pid": os.getpid()}
        )
    except redis.RedisError as exc:
        log.warning("could not publish the served model", extra={"error": str(exc)})


def report_choice(entry: dict) -> None:
    """One reranker choice for the admin page's recent choices (no dialog text: only candidates)."""
    try:
        ops_state.record_choice(_redis(), {**entry, "worker": _node["name"]})
    except redis.RedisError as exc:
        log.warning("could not record a reranker choice", extra={"error": str(exc)})


@task_failure.connect
def _record_failure(sender=None, task_id=None, exception=None, **_kwargs) -> None:
    if sender is None or sender.name != TASK_NAME:
        return
    from services.inference_worker import metrics

    metrics.FAILURES.labels(type(exception).__name__).inc()
    metrics.JOBS.labels("failed").inc()
    try:
        ops_state.record_failure(
            _redis(),
            {
                "job_id": task_id,
                "kind": type(exception).__name__,
                "message": str(exception)[:500],
                "worker": _node["name"],
            },
        )
    except redis.RedisError as exc:
        log.warning("could not record a failed job", extra={"error": str(exc)})
