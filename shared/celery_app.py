"""The Celery application shared by callers (gateway, bot) and the inference workers.

Reliability choices (docs/architecture.md, "The generation job"):
- JSON only, in both directions: a pickled payload is refused by the worker.
- `acks_late` + `reject_on_worker_lost` + prefetch 1: a job is acknowledged after it ran, and a
  worker killed mid-job gives it back to the queue instead of losing it.
- Redis `visibility_timeout` longer than the hard time limit, or a long job runs twice.
- Two plain-list queues instead of Redis "priorities" (which split one queue into hidden
  sub-lists that a queue-length autoscaler cannot see); workers list the interactive one first.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from shared.schemas import TASK_NAME
from shared.settings import QueueSettings

QUEUE_INTERACTIVE = "generate.interactive"
QUEUE_BULK = "generate.bulk"
QUEUES = (QUEUE_INTERACTIVE, QUEUE_BULK)


def create_celery_app(settings: QueueSettings, *, name: str = "dvach") -> Celery:
    """A Celery app bound to `settings.redis_url` (which must be resolved, not None)."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set (the stack launcher starts an embedded Redis and sets it)")
    app = Celery(name, broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        result_expires=settings.result_expires_s,
        # Callers learn of failures (worker lost, expired deadline) from the stored exception.
        task_track_started=True,
        result_extended=False,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Consume the queues in the order the worker lists them (interactive first) instead of
            # kombu's default round robin, and only the plain lists (no priority sub-lists).
            "queue_order_strategy": "priority",
            "priority_steps": [0],
            # Look for jobs of dead workers (unacked past the visibility timeout) this often.
            "unacked_restore_interval": settings.unacked_restore_interval_s,
            "unacked_restore_throttle": 1,
            # Reconnect instead of failing hard when Redis restarts.
            "socket_keepalive": True,
            "retry_on_timeout": True,
        },
        result_backend_transport_options={"retry_policy": {"timeout": 5.0}},
        broker_connection_retry_on_startup=True,
        redis_backend_health_check_interval=10,
        # Each queue its own direct exchange and routing key: a job lands in the list it names.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue=QUEUE_INTERACTIVE,
        task_routes={TASK_NAME: {"queue": QUEUE_INTERACTIVE}},
        task_create_missing_queues=False,
        # The worker's child loads a model at start: give it time before Celery calls it dead.
        worker_proc_alive_timeout=settings.worker_proc_alive_timeout_s,
        worker_send_task_events=True,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app
