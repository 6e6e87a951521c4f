"""The whole stack on one machine: Redis, Postgres, an inference worker, the gateway (and the
bot when a token is set), each a real process, with embedded servers where none is configured."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from shared.db import migrate
from shared.embedded import EmbeddedPostgres, RedisServer
from shared.settings import Settings

log = logging.getLogger("stack")


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    redis: RedisServer | None = None
    postgres: EmbeddedPostgres | None = None

    def start_servers(self) -> None:
        data = self.settings.data_dir
        redis_url = self.settings.redis_url
        if not redis_url:
            # Persistent (append-only file): queued jobs survive a restart of the stack.
            self.redis = RedisServer(data / "redis", port=self.settings.embedded_redis_port, persist=True).start()
            redis_url = self.redis.url
            log.info("REDIS_URL not set: started embedded Redis", extra={"url": redis_url})
        database_url = self.settings.database_url
        if not database_url:
            self.postgres = EmbeddedPostgres(data / "postgres").start()
            database_url = self.postgres.url
            log.info("DATABASE_URL not set: started embedded PostgreSQL", extra={"data_dir": str(data / "postgres")})
        migrate(database_url)
        self.env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url}

    def spawn(self, name: str, module: str, extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "LOG_FORMAT": os.environ.get("LOG_FORMAT", "console"), **self.env, **(extra_env or {})}
        self.processes[name] = subprocess.Popen([sys.executable, "-m", module], env=env)
        log.info("started", extra={"service": name, "pid": self.processes[name].pid})

    def wait_ready(self, timeout_s: float) -> bool:
        """Until the gateway says ready (broker up, a worker with its model loaded)."""
        url = f"http://{self.settings.gateway_host}:{self.settings.gateway_port}/readyz"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(url, timeout=3).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)  # polling readiness of processes we started; bounded by the deadline
        return False

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}")

    def stop(self) -> None:
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # Celery: warm shutdown, finishes its job
        for name, process in self.processes.items():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                log.warning("did not stop in time, killing", extra={"service": name})
                process.kill()
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()
        log.info("stack stopped")


def run_stack(settings: Settings) -> None:
    stack = Stack(settings)
    # Ctrl-C reaches the whole process group; the children stop themselves, we stop the servers.
    try:
        stack.start_servers()
        stack.spawn("inference_worker", "services.inference_worker")
        stack.spawn("gateway", "services.gateway")
        if settings.telegram_bot_token:
            stack.spawn("bot", "services.bot")
        else:
            log.info("TELEGRAM_BOT_TOKEN not set: the Telegram bot is not started")
        if not stack.wait_ready(timeout_s=600):
            raise RuntimeError("the stack did not become ready in 10 minutes")
        base = f"http://{settings.gateway_host}:{settings.gateway_port}"
        print(
            f"\nReady. The gateway listens on {base}\n"
            f"  curl -s {base}/v1/replies -H 'content-type: application/json' "
            "-d '{\"dialog\": [\"привет, анон\"]}'\n"
            "  make chat          # talk to the model in this terminal\n"
            f"  {base}/docs        # the API\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            stack.check_alive()
            time.sleep(1)  # supervising children: wake up once a second to see if one died
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        stack.stop()
