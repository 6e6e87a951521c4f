"""Fixtures of the fault suite: a steady load of reply requests, counted."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from shared.embedded import RedisServer
from tests.model_factory import make_tiny_gpt2


@dataclass
class LoadReport:
    """Requests in, and what came out of each: status code (or the transport error's name)."""

    sent: int = 0
    outcomes: Counter = field(default_factory=Counter)
    job_ids: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(self.outcomes.values())

    def row(self, case: str, load: str, injected: str) -> str:
        ok = self.outcomes.get(200, 0)
        failed = self.answered - ok
        duplicated = len(self.job_ids) - len(set(self.job_ids))
        return (
            f"| {case} | {load} | {injected} | {self.sent} | {ok} ok, {failed} reported failed "
            f"| {self.sent - self.answered} | {duplicated} |"
        )


async def steady_load(
    base_url: str,
    total: int,
    concurrency: int,
    report: LoadReport,
    *,
    timeout_s: float = 20,
    params: dict | None = None,
    on_progress=None,
) -> LoadReport:
    """`total` requests, `concurrency` at a time; every request's outcome is recorded."""
    counter = iter(range(total))

    async def client_loop(http: httpx.AsyncClient) -> None:
        for i in counter:
            report.sent += 1
            started = time.monotonic()
            try:
                response = await http.post(
                    "/v1/replies",
                    json={
                        "dialog": [f"сообщение {i}"],
                        "timeout_s": timeout_s,
                        "params": params or {"max_new_tokens": 8},
                    },
                )
                report.outcomes[response.status_code] += 1
                if response.status_code == 200:
                    report.job_ids.append(response.json()["job_id"])
                else:
                    assert response.json()["detail"], "every error carries a body"
            except httpx.HTTPError as exc:
                report.outcomes[type(exc).__name__] += 1
            report.latencies.append(time.monotonic() - started)
            if on_progress:
                await on_progress(report)

    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s + 30) as http:
        await asyncio.gather(*[client_loop(http) for _ in range(concurrency)])
    return report


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of the test's own, persistent (append-only, fsync always) like production's."""
    server = RedisServer(tmp_path / "redis", persist=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slow_model_dir(tmp_path_factory):
    return make_tiny_gpt2(tmp_path_factory.mktemp("slow-model") / "slow-gpt2", n_layer=8, n_embd=512)


# The bot fault cases start their own bot against the local Bot API stand-in.
from tests.bot.conftest import start_bot  # noqa: E402,F401 - the bot fixture, shared with tests/bot
