"""Fixtures of the trainer tests: a private database, a private Redis database and a model store.

The trainer tests activate model versions; workers read the active version from Redis (and the
database), so these tests use their own Postgres database and their own Redis database number:
the session's shared worker never sees their activations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from shared.db import migrate
from tests.conftest import create_database, drop_database
from tests.processes import REPO

TRAINER_REDIS_DB = 7


@pytest.fixture(scope="module")
def trainer_database_url(pg_admin_url: str) -> Iterator[str]:
    url = create_database()
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def trainer_redis_url(redis_url: str) -> Iterator[str]:
    url = urlsplit(redis_url)._replace(path=f"/{TRAINER_REDIS_DB}").geturl()
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def trainer_env(service_env, trainer_database_url, trainer_redis_url, tmp_path_factory) -> dict[str, str]:
    """Environment of the trainer CLI and of the workers that serve its versions."""
    root = tmp_path_factory.mktemp("trainer")
    return {
        **service_env,
        "REDIS_URL": trainer_redis_url,
        "DATABASE_URL": trainer_database_url,
        "MODEL_STORE_DIR": str(root / "store"),
        "TRAIN_RUNS_DIR": str(root / "runs"),
        "TORCH_THREADS": "1",  # tiny models: one thread is fastest and leaves a core to the worker
        "LOG_FORMAT": "json",
    }


def run_trainer(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m services.trainer ARGS` as a user runs it; output captured."""
    result = subprocess.run(
        [sys.executable, "-m", "services.trainer", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"trainer {args} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


@pytest.fixture(scope="module")
def trainer_cli(trainer_env):
    def run(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return run_trainer({**trainer_env, **(env or {})}, *args, check=check)

    return run


@pytest.fixture(scope="module")
def store_dir(trainer_env) -> Path:
    return Path(trainer_env["MODEL_STORE_DIR"])
