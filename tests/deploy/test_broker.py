"""Redis as the broker, as the deployment relies on it: the autoscaler's metric counts the jobs a
consumer holds as well as the ones waiting, and the gateway and the workers refuse a Redis that
may evict keys (or, told to, run and say so loudly).

The consumer below is kombu's own, on the same Redis transport and options as the workers: what it
holds unacknowledged is what a worker holds reserved or running."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from shared.celery_app import QUEUE_BULK, QUEUE_INTERACTIVE, create_celery_app
from shared.embedded import RedisServer, free_port, redis_server_binary, wait_for_port
from shared.generation_client import GenerationClient
from shared.redis_eviction import check_no_eviction, read_memory_state
from shared.settings import QueueSettings as Settings
from tests.deploy import manifests as m
from tests.processes import Gateway, ServiceProcess, Worker


@pytest.fixture
def private_redis(tmp_path) -> RedisServer:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def gateway_samples(gateway: Gateway) -> dict[str, float]:
    text = httpx.get(gateway.base_url + "/metrics", timeout=10).text
    return {
        (s.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}" if s.labels else "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_for_samples(gateway: Gateway, expected: dict[str, float], timeout: float = 60) -> dict[str, float]:
    """Until the gateway's background refresh shows `expected` (it reads Redis every 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = gateway_samples(gateway)
        if all(samples.get(name) == value for name, value in expected.items()):
            return samples
        if time.monotonic() > deadline:
            shown = {name: samples.get(name) for name in expected}
            raise AssertionError(f"gateway metrics {shown}, expected {expected}")
        time.sleep(0.5)  # the next refresh; bounded by the deadline


def test_jobs_in_system_counts_waiting_and_held_jobs(start_gateway, private_redis):
    gateway = start_gateway({"REDIS_URL": private_redis.url})
    settings = Settings(redis_url=private_redis.url)

    async def submit() -> None:
        client = GenerationClient(settings)
        try:
            for n in range(5):
                await client.submit([f"вопрос {n}"], priority="interactive", timeout_s=600)
            for n in range(2):
                await client.submit([f"рандом {n}"], priority="bulk", timeout_s=600)
        finally:
            await client.close()

    asyncio.run(submit())
    wait_for_samples(
        gateway,
        {
            f"dvach_queue_depth{{queue={QUEUE_INTERACTIVE}}}": 5,
            f"dvach_queue_depth{{queue={QUEUE_BULK}}}": 2,
            "dvach_jobs_held": 0,
            "dvach_jobs_in_system": 7,
        },
    )
    # A consumer with the workers' transport options takes 3 jobs and acknowledges none yet.
    app = create_celery_app(settings)
    held = []
    with app.connection_for_read() as connection:
        queue = app.amqp.queues[QUEUE_INTERACTIVE]
        with connection.Consumer([queue], callbacks=[lambda _body, message: held.append(message)]) as consumer:
            consumer.qos(prefetch_count=3)
            deadline = time.monotonic() + 30
            while len(held) < 3 and time.monotonic() < deadline:
                connection.drain_events(timeout=1)
            assert len(held) == 3
            # Taken from the list, not yet acknowledged: still work in the system.
            wait_for_samples(
                gateway,
                {
                    f"dvach_queue_depth{{queue={QUEUE_INTERACTIVE}}}": 2,
                    "dvach_jobs_held": 3,
                    "dvach_jobs_in_system": 7,
                },
            )
            held[0].ack()  # one job done
            wait_for_samples(gateway, {"dvach_jobs_held": 2, "dvach_jobs_in_system": 6})
            for message in held[1:]:
                message.requeue()
    app.close()


def evicting(server: RedisServer, policy: str = "allkeys-lru") -> RedisServer:
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory-policy", policy)
    client.close()
    return server


def test_gateway_refuses_a_redis_that_evicts(service_env, private_redis, tmp_path):
    evicting(private_redis)
    gateway = Gateway(free_port(), {**service_env, "REDIS_URL": private_redis.url}, tmp_path).start()
    try:
        gateway.process.wait(60)
    finally:
        gateway.kill()
    assert gateway.process.returncode != 0
    log = gateway.log_text()
    assert "maxmemory-policy is 'allkeys-lru'" in log and "noeviction" in log, log[-2000:]


def test_gateway_warns_and_exports_the_policy_when_told_to_run(start_gateway, private_redis):
    evicting(private_redis, "volatile-lru")
    gateway = start_gateway({"REDIS_URL": private_redis.url, "REDIS_EVICTION_POLICY_CHECK": "warn"})
    assert "REDIS EVICTS KEYS" in gateway.log_text()
    wait_for_samples(gateway, {"dvach_redis_maxmemory_policy_info{policy=volatile-lru}": 1})
    assert "dvach_redis_evicted_keys_total" in gateway_samples(gateway)


def test_worker_refuses_a_redis_that_evicts_before_loading_its_model(service_env, private_redis, tmp_path):
    evicting(private_redis)
    worker = Worker("evict@test", {**service_env, "REDIS_URL": private_redis.url}, Path(tmp_path)).start()
    try:
        worker.process.wait(120)
    finally:
        worker.kill()
    assert worker.process.returncode == 1
    log = worker.log_text()
    assert "maxmemory-policy is 'allkeys-lru'" in log, log[-2000:]
    assert "model loaded" not in log


def test_a_noeviction_redis_passes(start_gateway, private_redis):
    gateway = start_gateway({"REDIS_URL": private_redis.url})
    wait_for_samples(gateway, {"dvach_redis_maxmemory_policy_info{policy=noeviction}": 1})
    assert "REDIS EVICTS KEYS" not in gateway.log_text()


def redis_commands() -> dict[str, tuple[list[str], int]]:
    """The Redis server commands of docker-compose.yml and the dev overlay, with their memory limit."""
    compose = m.compose_config()["services"]["redis"]
    commands = {"compose": (compose["command"], parse_bytes(compose["mem_limit"], "docker"))}
    statefulset = m.named(m.render("overlays/dev"), "StatefulSet", "dvach-redis")
    (container,) = m.containers(statefulset)
    commands["dev"] = (container["command"], parse_bytes(container["resources"]["limits"]["memory"], "kubernetes"))
    return commands


# Each tool's units: Docker's are binary, Kubernetes' suffixes say which, Redis' "mb" is binary.
UNITS = {
    "docker": {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3},
    "kubernetes": {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3},
    "redis": {"": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3},
}


def parse_bytes(value: str, units: str) -> int:
    match = re.fullmatch(r"(\d+)([a-zA-Z]*)", str(value))
    assert match, value
    return int(match.group(1)) * UNITS[units][match.group(2)]


@pytest.mark.parametrize("deployment", ["compose", "dev"])
def test_the_deployed_redis_refuses_writes_when_full_and_evicts_nothing(deployment, tmp_path):
    command, limit = redis_commands()[deployment]
    args = list(command)
    assert args[0] == "redis-server"
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert options["--maxmemory-policy"] == "noeviction"
    # Half the container's limit: an AOF rewrite forks, its copy-on-write pages count too.
    assert parse_bytes(options["--maxmemory"], "redis") * 2 <= limit
    # The same command, in a folder of this test, on a free loopback port.
    options["--dir"] = str(tmp_path)
    port = free_port()
    server = ServiceProcess(
        f"redis-{deployment}",
        [
            redis_server_binary(),
            *(x for pair in options.items() for x in pair),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
        ],
        {},
        tmp_path,
    ).start()
    try:
        wait_for_port("127.0.0.1", port)
        client = redis.Redis(port=port)
        state = read_memory_state(client)
        assert (state.policy, state.maxmemory) == ("noeviction", parse_bytes(options["--maxmemory"], "redis"))
        assert check_no_eviction(Settings(redis_url=f"redis://127.0.0.1:{port}/0"), "test").policy == "noeviction"
        # Full: with a small limit to fill quickly, writes fail with OOM and every key stays.
        client.config_set("maxmemory", state.used_memory + 2 * 1024**2)
        written = 0
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            while written < 10_000:
                client.set(f"job:{written}", "x" * 4096, ex=600)  # expiring keys, like Celery's results
                written += 1
        assert client.dbsize() == written
        assert read_memory_state(client).evicted_keys == 0
        client.close()
    finally:
        server.stop()
