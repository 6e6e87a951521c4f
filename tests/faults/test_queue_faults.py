"""Faults under a steady load of reply requests through the gateway, with counts:
jobs in, results out, lost (no answer at all) and duplicated (one job answered twice)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import redis

from shared.celery_app import QUEUE_INTERACTIVE
from tests.faults.conftest import LoadReport, steady_load
from tests.processes import child_pids


async def test_redis_restarted_under_load(start_worker, start_gateway, private_redis):
    """Redis stops and comes back mid-load: every request is answered (200 or a 503 with a
    body), none hangs, and both the gateway and the worker reconnect by themselves."""
    env = {"REDIS_URL": private_redis.url}
    start_worker(env, node="survivor@test")
    gateway = start_gateway(env)
    report = LoadReport()
    restarted = asyncio.Event()

    async def restart_at_a_quarter(progress: LoadReport) -> None:
        if progress.answered == 10 and not restarted.is_set():
            restarted.set()
            await asyncio.to_thread(private_redis.stop)
            await asyncio.to_thread(private_redis.start)

    await steady_load(gateway.base_url, 40, 4, report, timeout_s=10, on_progress=restart_at_a_quarter)
    assert restarted.is_set()
    assert report.answered == report.sent == 40, report.outcomes  # nothing lost, nothing hanging
    assert set(report.outcomes) <= {200, 503}, report.outcomes
    print("\nredis restart outcomes", dict(report.outcomes))
    assert report.outcomes[200] >= 10, report.outcomes  # the answers before the restart at least
    assert len(set(report.job_ids)) == len(report.job_ids)  # no job answered twice

    after = LoadReport()
    await steady_load(gateway.base_url, 10, 2, after, timeout_s=30)
    assert after.outcomes == {200: 10}, after.outcomes  # recovered without a restart of anything
    print(
        "\nFAULT-ROW",
        report.row(
            "Redis restarted under load",
            "40 requests, 4 concurrent",
            "redis-server stopped and started after 10 answers",
        ),
    )


async def test_slow_worker_backpressure_and_drain(start_worker, start_gateway, private_redis, slow_model_dir):
    """Generation slower than the callers' timeout: callers get 503 in bounded time, the queue
    stays bounded by the gateway's backpressure, and it drains once the load stops."""
    env = {"REDIS_URL": private_redis.url, "MODEL_NAME_OR_PATH": str(slow_model_dir), "MAX_QUEUE_DEPTH": "6"}
    start_worker(env, node="sloth@test")
    gateway = start_gateway(env)
    broker = redis.Redis.from_url(private_redis.url)
    depths: list[int] = []

    async def watch_queue(progress: LoadReport) -> None:
        depths.append(broker.llen(QUEUE_INTERACTIVE))

    slow = {"max_new_tokens": 200, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}
    report = await steady_load(
        gateway.base_url, 40, 10, LoadReport(), timeout_s=1.0, params=slow, on_progress=watch_queue
    )
    assert report.answered == report.sent == 40
    # Every caller got an answer from the gateway: none ran into its own 31 s client timeout
    # (a generous bound on the 1 s the gateway waits: a loaded machine is slow, not stuck).
    assert set(report.outcomes) <= {200, 503}, report.outcomes
    assert report.outcomes[503] >= 30, report.outcomes
    assert max(depths) <= 6 + 10  # backpressure limit plus the requests admitted at the same moment

    deadline = time.monotonic() + 60
    while broker.llen(QUEUE_INTERACTIVE) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # expired jobs are dropped by the worker without generating
    assert broker.llen(QUEUE_INTERACTIVE) == 0
    drained = httpx.post(
        gateway.base_url + "/v1/replies",
        json={"dialog": ["ну что, живой?"], "timeout_s": 60, "params": {"max_new_tokens": 4}},
        timeout=90,
    )
    assert drained.status_code == 200, drained.text
    print(
        "\nFAULT-ROW",
        report.row(
            "Slow worker (generation > timeout)",
            "40 requests, 10 concurrent, 1 s timeout",
            "200-token replies on a big model, MAX_QUEUE_DEPTH=6",
        ),
    )


async def test_worker_killed_mid_job_under_load(start_worker, start_gateway, private_redis, slow_model_dir):
    """SIGKILL of the worker's child while requests keep coming, then it restarts: every accepted
    job gets exactly one result."""
    env = {"REDIS_URL": private_redis.url, "MODEL_NAME_OR_PATH": str(slow_model_dir)}
    worker = start_worker(env, node="phoenix@test")
    gateway = start_gateway(env)
    killed = asyncio.Event()

    async def kill_once(progress: LoadReport) -> None:
        if progress.answered == 3 and not killed.is_set():
            killed.set()
            for pid in child_pids(worker.pid):
                os.kill(pid, signal.SIGKILL)

    params = {"max_new_tokens": 60, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}
    report = await steady_load(
        gateway.base_url, 12, 3, LoadReport(), timeout_s=120, params=params, on_progress=kill_once
    )
    assert killed.is_set()
    assert report.outcomes == {200: 12}, report.outcomes
    assert len(set(report.job_ids)) == 12
    status = [httpx.get(f"{gateway.base_url}/v1/jobs/{job}", timeout=10).json()["status"] for job in report.job_ids]
    assert status == ["done"] * 12
    print(
        "\nFAULT-ROW",
        report.row(
            "Worker child SIGKILLed mid-job",
            "12 requests, 3 concurrent",
            "SIGKILL of the prefork child after 3 answers; Celery restarts it",
        ),
    )
