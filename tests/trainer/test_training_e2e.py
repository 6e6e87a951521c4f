"""The loop end to end: JSONL -> fine-tune a tiny model on CPU -> publish -> activate -> a real
worker serves it; a version that does not load is refused and the old one keeps serving."""

from __future__ import annotations

import json
import math
import shutil
import time

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import make_engine
from shared.db.models import ModelVersion
from shared.generation_client import GenerationClient
from shared.model_store import activate_version
from shared.schemas import GenerationParams
from shared.settings import QueueSettings
from tests.trainer.dialogs import write_dialogs_jsonl

PARAMS = GenerationParams(max_new_tokens=8, seed=3)
FAILED_LINE = '"model version failed to load; keeping the old model"'
SWITCHED_LINE = '"model version switched"'


@pytest.fixture(scope="module")
def trainer_worker(start_worker, trainer_env):
    """A worker of our own on the trainer's Redis database (its model gets switched)."""
    worker = start_worker(env=trainer_env, node="trainer-a@test", wait=False)
    yield worker
    worker.stop()


def active_in_db(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(ModelVersion.name).where(ModelVersion.is_active.is_(True))))
    finally:
        engine.dispose()


async def reply_version(client: GenerationClient) -> str:
    result = await client.generate(["привет анон как дела"], PARAMS, timeout_s=60)
    assert result.text
    return result.model_version


async def test_train_publish_activate_serve_and_refuse_a_broken_version(  # noqa: PLR0915, PLR0917 - one story, step by step
    trainer_cli, trainer_env, trainer_worker, start_worker, store_dir, tiny_model_dir, tmp_path, artifacts_dir
):
    started = time.monotonic()
    timings: dict[str, float] = {}

    # 1. Train on an exported JSONL and publish in one command (the worker starts meanwhile).
    data = write_dialogs_jsonl(tmp_path / "dialogs.jsonl", 320)
    run_dir = tmp_path / "run"
    trainer_cli(
        "train", "--jsonl", str(data), "--model", str(tiny_model_dir), "--run-dir", str(run_dir),
        "--max-steps", "30", "--batch-size", "16", "--lr", "3e-3", "--eval-fraction", "0.1",
        "--logging-steps", "5", "--publish", "tiny-ft-1",
    )  # fmt: skip
    timings["train_and_publish_s"] = time.monotonic() - started

    run = json.loads((run_dir / "run.json").read_text())
    metrics = run["metrics"]
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert metrics["perplexity_after"] == pytest.approx(math.exp(metrics["eval_loss_after"]))
    assert metrics["steps"] == 30
    assert run["data"]["dialogs"] == 320 and run["data"]["eval_examples"] == 32

    version = store_dir / "tiny-ft-1"
    meta = json.loads((version / "version.json").read_text())
    assert meta["name"] == "tiny-ft-1" and meta["base_model"] == str(tiny_model_dir)
    assert meta["data"]["sha256"] == run["data"]["sha256"] and len(meta["data"]["sha256"]) == 64
    assert meta["params"]["reply_only"] is True and meta["metrics"] == metrics
    for name in ("config.json", "model.safetensors", "tokenizer.json", "data.jsonl", "report.md", "report.json"):
        assert (version / name).exists(), name
    assert (version / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (version / "report.md").read_text()
    assert "| before |" in report and "| after |" in report and "Sample replies" in report
    assert len(json.loads((version / "report.json").read_text())["samples"]) == 5
    assert not (version / "training_args.bin").exists()

    # 2. Publishing the same name again is refused and changes nothing.
    before = (version / "version.json").read_text()
    again = trainer_cli("publish", str(run_dir), "tiny-ft-1", check=False)
    assert again.returncode != 0 and "never overwrites" in again.stderr
    assert (version / "version.json").read_text() == before
    assert active_in_db(trainer_env["DATABASE_URL"]) == []

    # 3. A running worker serves MODEL_NAME_OR_PATH until a version is activated, then the version.
    trainer_worker.wait_ready()
    client = GenerationClient(QueueSettings(redis_url=trainer_env["REDIS_URL"]))
    try:
        assert await reply_version(client) == tiny_model_dir.name
        activated = trainer_cli("activate", "tiny-ft-1")
        assert "activated tiny-ft-1" in activated.stdout
        assert await reply_version(client) == "tiny-ft-1"
        assert active_in_db(trainer_env["DATABASE_URL"]) == ["tiny-ft-1"]

        # 4. Activation while jobs are queued: none is lost or failed; results switch once, in order.
        trainer_cli("publish", str(run_dir), "tiny-ft-2")
        job_ids = [
            await client.submit([f"скинь картинку с котом {i}"], GenerationParams(max_new_tokens=32, seed=i))
            for i in range(6)
        ]
        engine = make_engine(trainer_env["DATABASE_URL"])
        redis_client = redis.Redis.from_url(trainer_env["REDIS_URL"])
        try:
            activate_version(engine, redis_client, "tiny-ft-2")
        finally:
            engine.dispose()
            redis_client.close()
        versions = [(await client.wait(job_id, 60)).model_version for job_id in job_ids]
        assert set(versions) <= {"tiny-ft-1", "tiny-ft-2"}
        assert versions == sorted(versions)  # a prefork child runs jobs in order: old ones, then new ones
        assert await reply_version(client) == "tiny-ft-2"
        timings["activate_and_switch_s"] = time.monotonic() - started - timings["train_and_publish_s"]

        # 5. A version that does not load: `activate` refuses it after trying to load it.
        broken_run = tmp_path / "broken-run"
        shutil.copytree(run_dir, broken_run)
        (broken_run / "model" / "model.safetensors").write_bytes(b"this is not a safetensors file" * 10)
        trainer_cli("publish", str(broken_run), "tiny-broken")
        refused = trainer_cli("activate", "tiny-broken", check=False)
        assert refused.returncode != 0 and "refused" in refused.stderr
        assert active_in_db(trainer_env["DATABASE_URL"]) == ["tiny-ft-2"]
        assert await reply_version(client) == "tiny-ft-2"

        # 6. Forced past the check, the workers refuse it themselves and keep the old model,
        #    and do not try it again on every job.
        switches = trainer_worker.log_text().count(SWITCHED_LINE)
        forced = trainer_cli("activate", "tiny-broken", "--skip-check").stdout
        generation = int(forced.rsplit("(generation ", 1)[1].split(")", 1)[0])
        assert active_in_db(trainer_env["DATABASE_URL"]) == ["tiny-broken"]
        for _ in range(3):
            assert await reply_version(client) == "tiny-ft-2"
        log = trainer_worker.log_text()
        assert log.count(FAILED_LINE) == 1
        assert log.count(SWITCHED_LINE) == switches
        listed = json.loads(trainer_cli("list", "--json").stdout)
        failure = {v["name"]: v["load_failure"] for v in listed["versions"]}["tiny-broken"]
        assert failure["generation"] == generation and failure["error"]

        # 7. A worker that starts now serves the version active before the broken one.
        late = start_worker(env=trainer_env, node="trainer-b@test")
        try:
            late_log = late.log_text()
            assert FAILED_LINE in late_log
            loaded = [json.loads(line) for line in late_log.splitlines() if '"model loaded"' in line]
            assert [entry["model_version"] for entry in loaded] == ["tiny-ft-2"]
        finally:
            late.stop()

        # 8. Activating the served version again is a no-op for workers (no reload).
        trainer_cli("activate", "tiny-ft-2")
        assert await reply_version(client) == "tiny-ft-2"
        assert trainer_worker.log_text().count(SWITCHED_LINE) == switches
    finally:
        await client.close()

    timings["total_s"] = time.monotonic() - started
    (artifacts_dir / "trainer_e2e_timing.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}))
    print(f"\ntiny end-to-end run: {timings}")
