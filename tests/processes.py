"""Real service processes for tests: Celery workers and uvicorn servers started as subprocesses.

Each waits for a real readiness signal (a worker answering a broadcast ping by name, a server
answering /healthz), never for a fixed time. Output goes to a log file the test can read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import httpx

from shared.celery_app import create_celery_app
from shared.settings import QueueSettings

REPO = Path(__file__).resolve().parent.parent


class ServiceProcess:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.args = args
        self.env = {**os.environ, **env}
        self.log_path = Path(log_dir) / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # A new session: killing the group later takes the Celery children with the parent.
            self.process = subprocess.Popen(
                self.args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit on its own; its exit code."""
        assert self.process is not None, "start() first"
        return self.process.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> None:
        """Graceful stop (SIGTERM: Celery's warm shutdown), then SIGKILL of the group."""
        if not self.alive():
            return
        os.killpg(self.pid, signal.SIGTERM)
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()


def child_pids(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class Worker(ServiceProcess):
    """`python -m services.inference_worker` with a unique node name."""

    def __init__(self, node: str, env: dict[str, str], log_dir: Path, extra_args: list[str] | None = None):
        args = [sys.executable, "-m", "services.inference_worker", "-n", node, *(extra_args or [])]
        super().__init__(node.split("@", maxsplit=1)[0], args, env, log_dir)
        self.node = node

    def wait_ready(self, timeout: float = 120) -> Worker:
        """Until the worker answers a ping and its child logged that the model is loaded."""
        app = create_celery_app(QueueSettings(redis_url=self.env["REDIS_URL"]))
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"worker {self.node} exited:\n{self.log_text()[-3000:]}")
                if "model loaded" in self.log_text() and app.control.ping(destination=[self.node], timeout=0.5):
                    return self
            raise TimeoutError(f"worker {self.node} not ready after {timeout}s:\n{self.log_text()[-3000:]}")
        finally:
            app.close()


class Gateway(ServiceProcess):
    def __init__(self, port: int, env: dict[str, str], log_dir: Path, name: str = "gateway"):
        env = {**env, "GATEWAY_PORT": str(port), "GATEWAY_HOST": "127.0.0.1"}
        super().__init__(name, [sys.executable, "-m", "services.gateway"], env, log_dir)
        self.base_url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 60) -> Gateway:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"gateway exited:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)  # the port is not open yet; bounded by the deadline
        raise TimeoutError(f"gateway not ready after {timeout}s:\n{self.log_text()[-3000:]}")
