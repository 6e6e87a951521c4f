"""The Celery task `inference.generate` (payload and result: shared/schemas.py)."""

from __future__ import annotations

import logging
import socket
import time

from celery import Task

from services.inference_worker import metrics
from services.inference_worker.app import app, settings
from services.inference_worker.model_versions import switch_if_activated
from services.inference_worker.ops_reporting import report_choice
from services.inference_worker.runtime import reranking, runtime, scheduler_for
from services.inference_worker.scheduler import DeadlineExpired, Priority
from shared.celery_app import QUEUE_BULK
from shared.schemas import TASK_NAME, Choice, GenerateTask, GenerationParams, GenerationResult

log = logging.getLogger(__name__)
HOSTNAME = socket.gethostname()


@app.task(name=TASK_NAME, bind=True)
def generate(self: Task, **payload) -> dict:
    started = time.time()
    task = GenerateTask.model_validate(payload)
    queue_ms = int((started - (task.enqueued_at or started)) * 1000)
    metrics.QUEUE_WAIT_SECONDS.observe(max(0.0, queue_ms / 1000))
    if started > task.deadline:
        log.info("deadline expired, dropping job", extra={"request_id": task.request_id, "queue_ms": queue_ms})
        raise DeadlineExpired(f"deadline passed {started - task.deadline:.1f}s before the job was taken")
    if not runtime.loaded:  # a solo/threads pool has no worker_process_init: load on first use
        runtime.load(settings)
    switch_if_activated(runtime, settings)  # a newly activated version is loaded before this job
    # The scheduler batches this job with others and runs it on a free lane (scheduler.py); the wait
    # is bounded here too, since a threads pool has no time limits (docs/inference.md).
    priority: Priority = (
        "bulk" if (self.request.delivery_info or {}).get("routing_key") == QUEUE_BULK else "interactive"
    )
    params = runtime.params_for(task)  # unset fields: the served version's defaults, else the project's
    if params.candidates is None:
        bulk = priority == "bulk"
        default = settings.inference_candidates_bulk if bulk else settings.inference_candidates_interactive
        params = params.model_copy(update={"candidates": default})
    reply = scheduler_for(runtime, settings).reply(
        task.dialog, params, priority, timeout=settings.task_time_limit_s, deadline=task.deadline
    )
    choice = choose(task, params, reply.candidates)
    generate_ms = int((time.time() - started) * 1000)
    metrics.GENERATION_SECONDS.observe(generate_ms / 1000)
    metrics.GENERATED_TOKENS.inc(reply.new_tokens)
    metrics.TOKENS_PER_SECOND.observe(reply.new_tokens / max(generate_ms / 1000, 1e-3))
    metrics.JOBS.labels("ok").inc()
    log.info(
        "reply generated",
        extra={
            "request_id": task.request_id,
            "new_tokens": reply.new_tokens,
            "queue_ms": queue_ms,
            "generate_ms": generate_ms,
        },
    )
    return GenerationResult(
        text=choice.candidates[choice.index].text,
        new_tokens=reply.new_tokens,
        model_version=runtime.version,
        queue_ms=queue_ms,
        generate_ms=generate_ms,
        worker=self.request.hostname or HOSTNAME,
        choice=choice,
    ).model_dump()


def choose(task: GenerateTask, params: GenerationParams, candidates: list[str]) -> Choice:
    """The reranker's choice among the candidates (reranker.py), counted and recorded for the admin page."""
    generator = runtime.generator
    assert generator is not None
    reranker = reranking.reranker(settings, generator, len(candidates))
    choice = reranker.choose(candidates, task.dialog, task.recent_replies, params.length, task.tone)
    metrics.CANDIDATES.observe(len(candidates))
    metrics.CHOICES.labels(choice.rule).inc()
    for scored in choice.candidates:
        for reason in scored.rejected:
            metrics.REJECTIONS.labels(reason).inc()
    chosen = choice.candidates[choice.index]
    if chosen.toxicity is not None:
        metrics.CHOSEN_TOXICITY.labels(choice.tone).observe(chosen.toxicity)
    if len(candidates) > 1:
        report_choice({"request_id": task.request_id, **choice.model_dump(mode="json")})
    log.info(
        "reply chosen",
        extra={
            "request_id": task.request_id,
            "candidates": len(candidates),
            "chosen": choice.index,
            "rule": choice.rule,
            "tone": choice.tone,
            "rejected": {i: c.rejected for i, c in enumerate(choice.candidates) if c.rejected},
        },
    )
    return choice
