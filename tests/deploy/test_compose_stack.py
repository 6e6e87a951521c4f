"""The stack started the way docker-compose.yml starts it, as local processes.

No Docker engine here, so the containers become processes: each service's `command` and
environment are read from docker-compose.yml (with the image's ENV from the Dockerfile and
.env.example as `.env`), and only what a container has but this machine has not is mapped:
- the compose hostnames `redis` / `postgres` -> a private Redis and a fresh, migrated Postgres
  database (the suite's fixtures);
- the container paths /data and /models -> folders of this test;
- MODEL_NAME_OR_PATH -> the suite's tiny GPT-2 (no hub here) with the transformers backend;
- published ports -> free loopback ports (GATEWAY_HOST 127.0.0.1: nothing listens beyond loopback).
Then the one-shot migration and model preparation run, the worker and the gateway start with
exactly those commands, their compose health checks pass, and a reply comes back through the
gateway.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.embedded import RedisServer, free_port
from tests.deploy import manifests as m
from tests.processes import REPO, ServiceProcess, wait_worker_ready


def local_environment(
    service: str, redis_url: str, database_url: str, root: Path, overrides: dict[str, str]
) -> dict[str, str]:
    config = m.compose_config()
    env = m.service_environment(config, service)
    for name, value in list(env.items()):
        if value.startswith("redis://redis:"):
            env[name] = redis_url
        elif value.startswith("postgresql://") and "@postgres:" in value:
            env[name] = database_url
        elif value.startswith(("/data", "/models")):
            env[name] = str(root / value.lstrip("/"))
    env.pop("PYTHONPATH", None)  # /app in the image; here the repository is the working directory
    env.update(overrides)
    return env


def local_command(service: str) -> list[str]:
    command = list(m.compose_config()["services"][service]["command"])
    if command[0] == "python":
        command[0] = sys.executable
    elif command[0] == "alembic":
        command[0] = str(Path(sys.executable).parent / "alembic")
    return command


def healthcheck(service: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the service's compose health check (`CMD` form) with the service's environment."""
    test = m.compose_config()["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = [sys.executable if test[1] == "python" else test[1], *test[2:]]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=30, check=False)


def wait_port(process: ServiceProcess, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise AssertionError(f"{process.name} exited:\n{process.log_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # the port is not open yet; bounded by the deadline
    raise AssertionError(f"{process.name} did not open port {port}:\n{process.log_text()[-3000:]}")


@pytest.fixture
def private_redis(tmp_path) -> str:
    # Its own Redis: no other test's worker can answer this stack's jobs.
    server = RedisServer(tmp_path / "redis").start()
    yield server.url
    server.stop()


def test_stack_started_like_compose_answers_through_the_gateway(private_redis, database_url, tiny_model_dir, tmp_path):
    root = tmp_path / "container"
    overrides = {
        "MODEL_NAME_OR_PATH": str(tiny_model_dir),
        "INFERENCE_BACKEND": "transformers",
        "INFERENCE_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    logs = tmp_path / "logs"

    # 1. The one-shot migration (the database is migrated already: it must be idempotent).
    migrate_env = local_environment("migrate", private_redis, database_url, root, overrides)
    done = subprocess.run(
        local_command("migrate"),
        cwd=REPO,
        env={**os.environ, **migrate_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    # 2. The one-shot model preparation the workers wait for (here the tiny model, with the
    # transformers backend: found, nothing to convert).
    prepare_env = local_environment("prepare-model", private_redis, database_url, root, overrides)
    done = subprocess.run(
        local_command("prepare-model"),
        cwd=REPO,
        env={**os.environ, **prepare_env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["path"] == str(tiny_model_dir)

    # 3. The worker, with the compose command (node name worker@%h) and environment.
    metrics_port = free_port()
    worker_env = local_environment(
        "inference_worker", private_redis, database_url, root, {**overrides, "WORKER_METRICS_PORT": str(metrics_port)}
    )
    assert local_command("inference_worker")[1:] == ["-m", "services.inference_worker", "-n", "worker@%h"]
    worker = ServiceProcess("compose-worker", local_command("inference_worker"), worker_env, logs)
    gateway_port = free_port()
    gateway_env = local_environment(
        "gateway",
        private_redis,
        database_url,
        root,
        {**overrides, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(gateway_port)},
    )
    gateway = ServiceProcess("compose-gateway", local_command("gateway"), gateway_env, logs)
    node = f"worker@{socket.gethostname()}"
    try:
        worker.start()
        wait_worker_ready(worker)
        # The worker's compose health check (the image's HEALTHCHECK, the k8s startup probe) passes.
        wait_port(worker, metrics_port)
        check = healthcheck("inference_worker", worker_env)
        assert check.returncode == 0, check.stderr + worker.log_text()[-2000:]

        # 4. The gateway; its compose health check passes; a reply comes back through it.
        gateway.start()
        wait_port(gateway, gateway_port)
        check = healthcheck("gateway", gateway_env)
        assert check.returncode == 0, check.stderr + gateway.log_text()[-2000:]
        base = f"http://127.0.0.1:{gateway_port}"
        ready = httpx.get(base + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert node in ready.json()["workers"]
        response = httpx.post(
            base + "/v1/replies", json={"dialog": ["привет, анон"], "params": {"max_new_tokens": 8}}, timeout=60
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["text"].strip()
        assert body["worker"] == node
        assert body["model_version"] == tiny_model_dir.name
    finally:
        gateway.stop()
        worker.stop(timeout=60)
    # SIGTERM was a warm shutdown: the worker exited on its own, not killed.
    assert worker.process.returncode == 0, worker.log_text()[-2000:]
