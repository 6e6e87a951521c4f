"""Fixtures of the bot suite: a fake Bot API server per bot, the bot as a real subprocess.

The session's Redis, Postgres and shared Celery worker (tests/conftest.py) serve the shared bot;
scenarios that break things (worker stopped, Redis down, webhook mode) start their own.
"""

from __future__ import annotations

import random
import secrets
import string
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.embedded import free_port
from tests.bot.fake_telegram import FakeTelegram
from tests.processes import ServiceProcess

_TOKEN_CHARS = string.ascii_letters + string.digits + "_-"


def make_token() -> tuple[int, str]:
    """A token shaped like BotFather's (random bot id, 35-character secret)."""
    bot_id = random.randint(10**9, 8 * 10**9)
    return bot_id, f"{bot_id}:AA{''.join(secrets.choice(_TOKEN_CHARS) for _ in range(33))}"


class BotProcess(ServiceProcess):
    """`python -m services.bot` against a fake Bot API server."""

    def __init__(self, server: FakeTelegram, env: dict[str, str], log_dir: Path, name: str):
        self.metrics_port = free_port()
        env = {
            **env,
            "TELEGRAM_BOT_TOKEN": server.token,
            "TELEGRAM_API_URL": server.url,
            "BOT_METRICS_HOST": "127.0.0.1",
            "BOT_METRICS_PORT": str(self.metrics_port),
        }
        super().__init__(name, [sys.executable, "-m", "services.bot"], env, log_dir)
        self.server = server

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_ready(self, timeout: float = 60) -> BotProcess:
        """Until the bot polls for updates (or, in webhook mode, registered its webhook)."""
        ready_method = "setWebhook" if self.env.get("BOT_MODE") == "webhook" else "getUpdates"

        def ready(calls):
            if not self.alive():
                return "exited"
            return any(c.method == ready_method for c in calls)

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # Short slices so that an exited process is noticed at once.
                if self.server.wait_for(ready, timeout=0.5) == "exited":
                    raise RuntimeError(f"bot exited:\n{self.log_text()[-3000:]}")
                return self
            except TimeoutError:
                continue
        raise TimeoutError(f"bot not ready after {timeout}s:\n{self.log_text()[-3000:]}")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Samples of /metrics: {(name, sorted labels): value}."""
        text = httpx.get(self.metrics_url, timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def wait_metric(self, name: str, at_least: float, timeout: float = 30, **labels: str) -> float:
        """Until a counter reaches `at_least` (polls /metrics; bounded)."""
        deadline = time.monotonic() + timeout
        value = 0.0
        while time.monotonic() < deadline:
            value = self.metric(name, **labels)
            if value >= at_least:
                return value
            if not self.alive():
                raise RuntimeError(f"bot exited:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)  # polling a counter, bounded by the deadline
        raise TimeoutError(f"{name}{labels} stayed at {value} < {at_least} for {timeout}s")


@dataclass
class RunningBot:
    server: FakeTelegram
    process: BotProcess

    def stop(self) -> None:
        self.process.stop()
        self.server.stop()


# Short limits keep the fault scenarios quick; the rate limits stay Telegram's.
BOT_TEST_ENV = {
    "BOT_REQUEST_TIMEOUT_S": "3",
    "BOT_POLLING_TIMEOUT_S": "5",
    "BOT_MAX_RETRY_AFTER_S": "5",
    "BOT_USER_REPLIES_PER_MINUTE": "5",
    "BOT_SHUTDOWN_GRACE_S": "2",
    "BOT_SETTINGS_CACHE_S": "2",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="session")
def start_bot(service_env, tmp_path_factory) -> Iterator[Callable[..., RunningBot]]:
    """Factory: a fresh fake Bot API server and a bot process polling it (or serving a webhook)."""
    started: list[RunningBot] = []
    log_dir = tmp_path_factory.mktemp("bot-logs")

    def start(env: dict[str, str] | None = None, wait: bool = True) -> RunningBot:
        bot_id, token = make_token()
        server = FakeTelegram(token=token, bot_id=bot_id).start()
        process = BotProcess(
            server, {**service_env, **BOT_TEST_ENV, **(env or {})}, log_dir, f"bot-{uuid.uuid4().hex[:6]}"
        )
        process.start()
        running = RunningBot(server, process)
        started.append(running)
        if wait:
            process.wait_ready()
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="session")
def bot(start_bot, worker) -> RunningBot:
    """The shared bot: session Redis, Postgres and worker. Tests use their own chats and users."""
    return start_bot()


@pytest.fixture
def tg(bot) -> FakeTelegram:
    return bot.server
