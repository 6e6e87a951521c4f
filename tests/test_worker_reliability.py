"""Workers scale out and lose nothing: several workers share a queue; a worker killed mid-job
gives the job back and it completes once. Each test runs on its own Redis."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from shared.embedded import RedisServer
from shared.generation_client import GenerationClient
from shared.schemas import GenerationParams
from shared.settings import QueueSettings
from tests.model_factory import make_tiny_gpt2
from tests.processes import child_pids

# Long enough that a job is surely still running when the test kills its worker.
SLOW_PARAMS = GenerationParams(max_new_tokens=200, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def slow_model_dir(tmp_path_factory):
    """A bigger random GPT-2: a couple of seconds per 200-token reply on one thread."""
    return make_tiny_gpt2(tmp_path_factory.mktemp("slow-model") / "slow-gpt2", n_layer=8, n_embd=512)


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


async def _wait_started(client: GenerationClient, job_ids: list[str], timeout: float = 60) -> str:
    """The first of `job_ids` a worker has started (STARTED is published by the backend)."""

    async def first_started():
        while True:
            for job_id in job_ids:
                if (await client.status(job_id)).state == "STARTED":
                    return job_id
            await asyncio.sleep(0.05)  # polling the state; bounded by wait_for below

    return await asyncio.wait_for(first_started(), timeout)


async def test_two_workers_share_a_queue(start_worker, private_redis, tiny_model_dir):
    env = {"REDIS_URL": private_redis.url}
    names = {"left@test", "right@test"}
    workers = [start_worker(env, node=name) for name in sorted(names)]
    client = GenerationClient(QueueSettings(redis_url=private_redis.url))
    try:
        params = GenerationParams(max_new_tokens=60, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
        results = await asyncio.gather(*[client.generate([f"вопрос {i}"], params, timeout_s=120) for i in range(16)])
    finally:
        await client.close()
        for worker in workers:
            worker.stop()
    assert len(results) == 16
    assert {r.worker for r in results} == names


async def test_worker_child_killed_mid_job_requeues_and_nothing_is_lost(start_worker, private_redis, slow_model_dir):
    env = {"REDIS_URL": private_redis.url, "MODEL_NAME_OR_PATH": str(slow_model_dir)}
    worker = start_worker(env, node="victim@test")
    client = GenerationClient(QueueSettings(redis_url=private_redis.url))
    try:
        job_ids = [await client.submit([f"сообщение {i}"], SLOW_PARAMS, timeout_s=240) for i in range(4)]
        running = await _wait_started(client, job_ids)
        children = child_pids(worker.pid)
        assert children, "prefork worker has a child process"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        results = await asyncio.gather(*[client.wait(job_id, 240) for job_id in job_ids])
    finally:
        await client.close()
        worker.stop()
    assert len(results) == len(job_ids)  # jobs in == results out
    assert all(r.text for r in results)
    log = worker.log_text()
    assert "WorkerLostError" in log or "signal 9" in log
    assert running in job_ids


async def test_whole_worker_killed_then_restarted_job_is_redelivered(start_worker, private_redis, slow_model_dir):
    """SIGKILL of the worker and all its children (a pod killed): the unacknowledged job goes
    back to the queue after the visibility timeout and the restarted worker completes it."""
    env = {
        "REDIS_URL": private_redis.url,
        "MODEL_NAME_OR_PATH": str(slow_model_dir),
        "TASK_SOFT_TIME_LIMIT_S": "8",
        "TASK_TIME_LIMIT_S": "10",
        "VISIBILITY_MARGIN_S": "2",
        # One candidate: the short limits that keep redelivery quick are sized for one sampled reply
        # (four took past 8 s on a 2-core CPU without VNNI).
        "INFERENCE_CANDIDATES_INTERACTIVE": "1",
    }
    first = start_worker(env, node="doomed@test")
    client = GenerationClient(QueueSettings(redis_url=private_redis.url))
    try:
        job_ids = [await client.submit([f"реплика {i}"], SLOW_PARAMS, timeout_s=240) for i in range(3)]
        await _wait_started(client, job_ids)
        first.kill()
        second = start_worker(env, node="phoenix@test")
        results = await asyncio.gather(*[client.wait(job_id, 240) for job_id in job_ids])
    finally:
        await client.close()
    second.stop()
    assert len(results) == 3
    assert all(r.text for r in results)
    # The job that was running when the first worker died was finished by the second one.
    assert any(r.worker == "phoenix@test" for r in results)
