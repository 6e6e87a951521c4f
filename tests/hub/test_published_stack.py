"""The published model end to end, as a new user with network access runs the stack: the worker
downloads the default hub name from the (stand-in) hub and serves it on the fast backend, a
hundred replies through the gateway carry no special-token text, hostile turns get a clean reply;
then the trainer fine-tunes from the base model's layout (a tokenizer one entry larger than the
model), publishes, activates, and the worker serves the new version on the fast backend."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from shared.db import migrate
from shared.embedded import free_port
from shared.prompt import SPECIAL_TOKEN_TEXTS
from shared.settings import DEFAULT_BASE_MODEL, DEFAULT_MODEL
from tests.conftest import create_database, drop_database
from tests.hub.conftest import hub_env
from tests.hub.test_published_model import HOSTILE, MARKER
from tests.trainer.conftest import run_trainer
from tests.trainer.dialogs import write_dialogs_jsonl

REDIS_DB = 9  # a database of its own: the session's shared worker must not take these jobs


@pytest.fixture(scope="module")
def stack_env(service_env, redis_url, hub, tmp_path_factory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("published-stack")
    url = urlsplit(redis_url)._replace(path=f"/{REDIS_DB}").geturl()
    redis.Redis.from_url(url).flushdb()
    database = create_database()
    migrate(database)
    yield {
        **service_env,
        **hub_env(hub, root / "hf"),
        "REDIS_URL": url,
        "DATABASE_URL": database,
        "MODEL_NAME_OR_PATH": DEFAULT_MODEL,  # the default, named explicitly against the suite's tiny model
        "INFERENCE_BACKEND": "auto",
        "INFERENCE_CACHE_DIR": str(root / "converted"),
        "DEMO_MODEL_DIR": str(root / "demo"),  # were the hub not used, the demo model would appear here
        "MODEL_STORE_DIR": str(root / "store"),
        "TRAIN_RUNS_DIR": str(root / "runs"),
        "WORKER_METRICS_PORT": str(free_port()),
        "TORCH_THREADS": "1",
    }
    drop_database(database)


@pytest.fixture(scope="module")
def stack(stack_env, start_worker, start_gateway):
    worker = start_worker(env=stack_env, node="published@test")
    return worker, start_gateway(stack_env)


def model_info(env: dict[str, str]) -> set[tuple[str, str]]:
    """(version, backend) pairs the worker's dvach_worker_model_info reports as served."""
    text = httpx.get(f"http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics", timeout=5).text
    found = set()
    for labels, value in re.findall(r"^dvach_worker_model_info\{([^}]*)\} ([0-9.e+-]+)$", text, re.M):
        if float(value) == 1:
            pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            found.add((pairs["model_version"], pairs["backend"]))
    return found


def clean(text: str) -> bool:
    return not MARKER.search(text) and not any(s in text for s in SPECIAL_TOKEN_TEXTS)


async def replies(base_url: str, dialogs: list[list[str]]) -> list[httpx.Response]:
    limit = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, dialog: list[str]) -> httpx.Response:
        async with limit:
            return await client.post("/v1/replies", json={"dialog": dialog, "params": {"max_new_tokens": 24}})

    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        return await asyncio.gather(*(one(client, d) for d in dialogs))


async def test_the_default_hub_model_is_served_on_the_fast_backend_without_special_tokens(stack, stack_env, hub):
    worker, gateway = stack
    assert model_info(stack_env) == {(DEFAULT_MODEL, "onnxruntime")}
    assert "demo model" not in worker.log_text()
    assert hub.fetched("/cdn/" + hub.repos[DEFAULT_MODEL].files["pytorch_model.bin"].sha256) >= 1

    answers = await replies(gateway.base_url, [[f"анон, скинь кота {i}", "привет"] for i in range(100)])
    assert [r.status_code for r in answers] == [200] * 100
    bodies = [r.json() for r in answers]
    assert {b["model_version"] for b in bodies} == {DEFAULT_MODEL}
    assert [b["text"] for b in bodies if not clean(b["text"])] == []
    assert sum(bool(b["text"]) for b in bodies) == 100  # empty samples are drawn again, never returned

    hostile = await replies(gateway.base_url, [[text, text] for text in HOSTILE])
    assert [r.status_code for r in hostile] == [200] * len(HOSTILE)
    assert [r.json()["text"] for r in hostile if not clean(r.json()["text"])] == []


async def test_a_fine_tune_of_the_base_layout_is_published_activated_and_served_fast(stack, stack_env, tmp_path):
    worker, gateway = stack
    data = write_dialogs_jsonl(tmp_path / "dialogs.jsonl", 64)
    trained = run_trainer(
        stack_env, "train", "--jsonl", str(data), "--model", DEFAULT_BASE_MODEL, "--run-dir", str(tmp_path / "run"),
        "--max-steps", "6", "--batch-size", "8", "--lr", "1e-3", "--eval-fraction", "0.1",
        "--publish", "hub-ft-1", "--activate", "--generation-defaults", '{"top_k": 20}',
    )  # fmt: skip
    assert "activated hub-ft-1" in trained.stdout, trained.stderr[-3000:]
    store = stack_env["MODEL_STORE_DIR"]
    meta = json.loads(Path(f"{store}/hub-ft-1/version.json").read_text())
    assert meta["base_model"] == DEFAULT_BASE_MODEL and meta["generation_defaults"] == {"top_k": 20}
    tokenizer_size = json.loads(Path(f"{store}/hub-ft-1/tokenizer.json").read_text())["added_tokens"][-1]["id"] + 1
    assert tokenizer_size == json.loads(Path(f"{store}/hub-ft-1/config.json").read_text())["vocab_size"] + 1

    # The first job after the activation switches the model (jobs beside it finish on the old one).
    answers = await replies(gateway.base_url, [["привет анон"]])
    answers += await replies(gateway.base_url, [["</s>|1|2|<pad>", "как дела"]])
    assert [r.json()["model_version"] for r in answers] == ["hub-ft-1", "hub-ft-1"]
    assert all(clean(r.json()["text"]) for r in answers)
    assert ("hub-ft-1", "onnxruntime") in model_info(stack_env)
    loaded = [json.loads(line) for line in worker.log_text().splitlines() if '"model loaded"' in line]
    assert [(e["model_version"], e["backend"]) for e in loaded][-1] == ("hub-ft-1", "onnxruntime")
