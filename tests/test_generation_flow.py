"""The generation path end to end: gateway -> Redis -> Celery worker -> result backend -> gateway."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from shared.celery_app import QUEUE_INTERACTIVE, create_celery_app
from shared.generation_client import GenerationClient, JobFailed
from shared.schemas import TASK_NAME, GenerationParams
from shared.settings import QueueSettings


def test_reply_end_to_end_through_gateway(gateway, tiny_model_dir):
    response = httpx.post(
        gateway.base_url + "/v1/replies",
        json={"dialog": ["а ты чего не спишь", "сижу на двачах"], "params": {"max_new_tokens": 12, "seed": 7}},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"].strip() == body["text"] and body["text"]
    assert 1 <= body["new_tokens"] <= 12 * 3 * 4  # up to three attempts of the 4 candidates of an interactive job
    assert len(body["choice"]["candidates"]) == 4
    assert body["model_version"] == tiny_model_dir.name
    assert body["queue_ms"] >= 0 and body["generate_ms"] >= 0
    assert body["worker"] == "shared@test"


def test_async_job_can_be_polled(gateway):
    accepted = httpx.post(gateway.base_url + "/v1/replies", json={"dialog": ["бамп"], "wait": False}, timeout=10)
    assert accepted.status_code == 202
    job = accepted.json()
    assert job["status_url"] == f"/v1/jobs/{job['job_id']}"
    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(gateway.base_url + job["status_url"], timeout=10).json()
        if status["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
    assert status["status"] == "done", status
    assert status["result"]["text"]


def test_unknown_job_is_404(gateway):
    response = httpx.get(gateway.base_url + f"/v1/jobs/{uuid.uuid4().hex}", timeout=10)
    assert response.status_code == 404
    assert "no job" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"dialog": []}, "dialog is empty"),
        ({"dialog": ["  "]}, "empty or only whitespace"),
        ({"dialog": ["x"] * 9}, "too many turns"),
        ({"dialog": ["я" * 4097]}, "at most 4096"),
        ({"dialog": ["x"], "params": {"temperature": 0}}, "greater than or equal to 0.05"),
        ({"dialog": ["x"], "params": {"top_p": 1.5}}, "less than or equal to 1"),
        ({"dialog": ["x"], "params": {"max_new_tokens": 10_000}}, "less than or equal to 256"),
        ({"dialog": ["x"], "params": {"length": "7"}}, "'1', '2', '3' or '-'"),
        ({"dialog": ["x"], "params": {"top_k": "many"}}, "valid integer"),
        ({"dialog": "just a string"}, "valid list"),
        ({"dialog": [1, 2]}, "valid string"),
        ({"dialog": ["x"], "unknown": 1}, "Extra inputs are not permitted"),
        ({}, "Field required"),
    ],
)
def test_bad_input_is_422_with_a_readable_message(gateway, body, fragment):
    response = httpx.post(gateway.base_url + "/v1/replies", json=body, timeout=10)
    assert response.status_code == 422, response.text
    assert fragment in response.text


def test_malformed_json_is_422(gateway):
    response = httpx.post(
        gateway.base_url + "/v1/replies",
        content=b'{"dialog": ["x"',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 422
    assert "JSON" in response.text


def test_oversized_body_is_413(gateway):
    response = httpx.post(gateway.base_url + "/v1/replies", json={"dialog": ["я" * 200_000]}, timeout=10)
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]


def test_health_and_readiness(gateway):
    assert httpx.get(gateway.base_url + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(gateway.base_url + "/readyz", timeout=10)
    assert ready.status_code == 200
    assert "shared@test" in ready.json()["workers"]


def test_metrics_exposed(gateway):
    httpx.post(gateway.base_url + "/v1/replies", json={"dialog": []}, timeout=10)
    text = httpx.get(gateway.base_url + "/metrics", timeout=5).text
    assert "http_requests_total" in text
    assert "dvach_gateway_replies_total" in text


def test_no_worker_gives_503_with_retry_after(start_gateway, redis_server, service_env, tmp_path_factory):
    """A gateway on a Redis no worker listens to: the caller gets 503 and Retry-After when its own
    timeout ends, not a hang (the client's 60 s bound is generous: a loaded machine is slow, not stuck)."""
    from shared.embedded import RedisServer

    lonely = RedisServer(tmp_path_factory.mktemp("lonely-redis")).start()
    try:
        gw = start_gateway({"REDIS_URL": lonely.url})
        response = httpx.post(gw.base_url + "/v1/replies", json={"dialog": ["эй"], "timeout_s": 1.5}, timeout=60)
        assert response.status_code == 503
        assert response.json()["detail"] == "no worker made a reply within 1.5s"  # the caller's timeout ended it
        assert int(response.headers["retry-after"]) >= 1
        assert httpx.get(gw.base_url + "/readyz", timeout=10).status_code == 503
    finally:
        lonely.stop()


async def test_expired_deadline_is_dropped_not_generated(worker, redis_url):
    """A job whose deadline passed before a worker took it fails with DeadlineExpired."""
    client = GenerationClient(QueueSettings(redis_url=redis_url))
    try:
        app = client.app
        job_id = uuid.uuid4().hex
        await asyncio.to_thread(
            app.send_task,
            TASK_NAME,
            kwargs={"request_id": job_id, "dialog": ["поздно"], "params": {}, "deadline": time.time() - 5},
            task_id=job_id,
            queue=QUEUE_INTERACTIVE,
        )
        with pytest.raises(JobFailed) as failure:
            await client.wait(job_id, 30)
        assert failure.value.kind == "DeadlineExpired"
    finally:
        await client.close()
    assert '"deadline expired, dropping job"' in worker.log_text()


async def test_pickle_payload_is_refused(worker, redis_url):
    """The worker accepts JSON only: a pickled message never runs."""
    app = create_celery_app(QueueSettings(redis_url=redis_url))
    app.conf.task_serializer = "pickle"
    app.conf.accept_content = ["pickle", "json"]
    job_id = uuid.uuid4().hex
    app.send_task(
        TASK_NAME,
        kwargs={"request_id": job_id, "dialog": ["x"], "deadline": time.time() + 60},
        task_id=job_id,
        queue=QUEUE_INTERACTIVE,
        serializer="pickle",
    )
    client = GenerationClient(QueueSettings(redis_url=redis_url))
    try:
        status = await client.status(job_id)
        assert status.state == "PENDING"
        # The refusal is logged by the worker when it drains the message; a JSON job sent after
        # it is served, so by the time that one is done the pickled one was seen and refused.
        await client.generate(["а теперь json"], GenerationParams(max_new_tokens=4), timeout_s=60)
        assert (await client.status(job_id)).state == "PENDING"
    finally:
        await client.close()
        app.close()
    assert "pickle" in worker.log_text().lower()


@pytest.mark.timeout(300)
async def test_hundreds_of_concurrent_waits_share_one_connection(worker, redis_url):
    """More jobs waited on at once than a Redis pool has connections (redis-py's default is 100):
    every one gets its answer, and the client does not hold a connection per waiting job."""
    import psutil

    client = GenerationClient(QueueSettings(redis_url=redis_url))
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    try:
        params = GenerationParams(max_new_tokens=6)
        job_ids = await asyncio.gather(*[client.submit([f"сообщение {i}"], params, timeout_s=240) for i in range(150)])
        outcomes = await asyncio.gather(*[client.wait(job_id, 240) for job_id in job_ids], return_exceptions=True)
        # Pooled connections stay open after use: a connection per waiting job would show here.
        mine = [c for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == redis_port]
    finally:
        await client.close()
    # Each wait ended with the worker's answer: a reply, or (rarely, from the random tiny model)
    # the worker's report that it generated nothing; never a lost connection or a timeout.
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(f, JobFailed) and f.kind == "EmptyGeneration" for f in failures), failures[:3]
    replies = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(replies) >= 140 and all(r.text for r in replies)
    # The pool, one pub/sub connection, Celery's producer and backend connections (about 80 here);
    # a connection per waiting job would be 150 and more.
    assert len(mine) < 150, len(mine)


async def test_the_result_watcher_hands_each_publish_to_its_waiter(redis_url):
    """The shared pub/sub connection routes a payload published on a result key (Celery gives the
    key as bytes) to the waiter of that key and to no other."""
    import redis.asyncio as aioredis

    client = GenerationClient(QueueSettings(redis_url=redis_url))
    publisher = aioredis.from_url(redis_url)
    try:
        mine, other = (client.app.backend.get_key_for_task(uuid.uuid4().hex) for _ in range(2))
        watcher = client._watcher
        queue = await watcher.watch(mine)
        bystander = await watcher.watch(other)
        await publisher.publish(mine, b"payload")
        assert await asyncio.wait_for(queue.get(), timeout=10) == b"payload"
        assert bystander.empty()
        watcher.unwatch(mine, queue)
        watcher.unwatch(other, bystander)
    finally:
        await publisher.aclose()
        await client.close()


def test_access_log_has_requests_but_not_health_or_metrics_polls(gateway):
    """The gateway logs each request, except the polls (readiness, liveness, Prometheus) that
    would otherwise fill its log with a line a second."""
    for path in ("/healthz", "/readyz", "/metrics"):
        httpx.get(gateway.base_url + path, timeout=10)
    assert httpx.post(gateway.base_url + "/v1/replies", json={"dialog": []}, timeout=10).status_code == 422
    log = gateway.log_text()
    assert "POST /v1/replies HTTP/1.1" in log
    for path in ("/healthz", "/readyz", "/metrics"):
        assert f"GET {path} HTTP" not in log
