"""Real service processes for tests: Celery workers and uvicorn servers started as subprocesses.

Each waits for a real readiness signal (a worker logging that its consumer takes jobs, a server
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

REPO = Path(__file__).resolve().parent.parent


class ServiceProcess:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.args = args
        self.env = {**os.environ, **env}
        self.log_path = Path(log_dir) / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.log_start = 0  # where this run's output begins: a restarted process appends

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.log_start = log.tell()
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

    def run_log_text(self) -> str:
        """The output of the current run only."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

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
        wait_worker_ready(self, timeout)
        return self


def wait_worker_ready(worker: ServiceProcess, timeout: float = 120) -> None:
    """Until the worker logged that its consumer takes jobs and that a process of it loaded the
    model. (Not a broadcast ping: over Redis one can go unanswered by a worker that consumes fine.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"worker {worker.name} exited:\n{worker.log_text()[-3000:]}")
        log = worker.run_log_text()
        if "worker ready" in log and "model loaded" in log:
            return
        time.sleep(0.05)  # polling the log; bounded by the deadline
    raise TimeoutError(f"worker {worker.name} not ready after {timeout}s:\n{worker.log_text()[-3000:]}")


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
