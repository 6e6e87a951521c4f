"""`make run` (python -m services.stack run) on a machine with nothing configured: embedded Redis
and PostgreSQL, a worker, the gateway; a quiet terminal (a line per service as it becomes ready,
then the banner, none of the third-party chatter); Ctrl-C stops every process it started, and so
does SIGTERM sent to the launcher alone (`kill`, a process manager)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from shared.embedded import free_port
from tests.processes import REPO

CHATTER = [
    "The files belonging to this database system",  # initdb's output
    "setup plugin",  # Alembic's plugins
    "Running upgrade",  # Alembic's INFO
    "SecurityWarning",  # Celery, run as root
    "-------------- celery@",  # Celery's banner
    "XDG_RUNTIME_DIR",  # platformdirs
    "GET /readyz",
    "GET /healthz",  # the launcher's own polls in the access log
    "Uvicorn running on",  # uvicorn's INFO
]


def stack_processes(launcher: psutil.Process, data_dir: Path) -> list[psutil.Process]:
    """The launcher's children and the embedded PostgreSQL (pg_ctl daemonizes it)."""
    found = launcher.children(recursive=True)
    for process in psutil.process_iter(["cmdline"]):
        if str(data_dir) in " ".join(process.info["cmdline"] or []) and process not in found:
            found.append(process)
    return found


@pytest.mark.timeout(600)
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_make_run_is_quiet_and_ctrl_c_stops_everything(tiny_model_dir, tmp_path, private_postgres_dir, stop):
    data = private_postgres_dir / "data"  # embedded PostgreSQL's data is in it: see tests/conftest.py
    gateway_port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "TELEGRAM_BOT_TOKEN", "LOG_LEVEL")
    }
    env.update(
        {
            "DATA_DIR": str(data),
            "GATEWAY_PORT": str(gateway_port),
            "EMBEDDED_REDIS_PORT": str(free_port()),
            "WORKER_METRICS_PORT": str(free_port()),
            "MODEL_NAME_OR_PATH": str(tiny_model_dir),
            "INFERENCE_BACKEND": "transformers",
            "TORCH_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    out_path = tmp_path / "run.log"
    with open(out_path, "wb") as out:
        # A session of its own: Ctrl-C in a terminal signals the whole foreground process group.
        launcher = subprocess.Popen(
            [sys.executable, "-m", "services.stack", "run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "Ready." not in out_path.read_text(errors="replace"):
            assert launcher.poll() is None, out_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "not ready in 300 s:\n" + out_path.read_text(errors="replace")
            time.sleep(0.2)  # polling the launcher's output for its banner; bounded by the deadline
        reply = httpx.post(
            f"http://127.0.0.1:{gateway_port}/v1/replies",
            json={"dialog": ["привет"], "params": {"max_new_tokens": 4}},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        started = stack_processes(psutil.Process(launcher.pid), data)
        assert len(started) >= 4  # redis-server, postgres, the worker, the gateway (and their children)
        if stop == "ctrl-c":  # a terminal signals the whole foreground process group
            os.killpg(launcher.pid, signal.SIGINT)
        else:
            launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(120) == 0, out_path.read_text(errors="replace")[-4000:]
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    output = out_path.read_text(errors="replace")
    lines = output.splitlines()
    ready = [line.split()[0] for line in lines if line.startswith("  ") and " ready " in line]
    assert sorted(ready) == ["gateway", "postgres", "redis", "worker"], output
    assert any(line.split()[:2] == ["bot", "off"] for line in lines), output
    banner = lines.index("Ready. The gateway listens on " + f"http://127.0.0.1:{gateway_port}")
    assert all(lines.index(line) < banner for line in lines if " ready " in line)  # the banner comes last
    assert lines[-1] == "stopped."
    for chatter in CHATTER:
        assert chatter not in output, f"{chatter!r} in the output:\n{output}"
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [p.info if hasattr(p, "info") else p for p in alive]
