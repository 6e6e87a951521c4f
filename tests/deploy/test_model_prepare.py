"""The worker's model prepared before the worker starts (the pod's init container, compose's
`prepare-model`): converted once there, then only loaded by the worker, whose memory limit is
set for serving (docs/deploy.md, "Resources")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from shared.embedded import RedisServer
from tests.processes import REPO


@pytest.fixture
def prepared_env(service_env, tiny_model_dir, tmp_path):
    """A worker's environment on a Redis and a model of its own, nothing converted yet, no
    database (no active version can come from another test)."""
    redis = RedisServer(tmp_path / "redis").start()
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    env = {
        **service_env,
        "REDIS_URL": redis.url,
        "DATABASE_URL": "",
        "MODEL_NAME_OR_PATH": str(model),
        "INFERENCE_BACKEND": "onnxruntime",
        "INFERENCE_CACHE_DIR": str(tmp_path / "converted"),
        "MODEL_STORE_DIR": str(tmp_path / "store"),
        "DATA_DIR": str(tmp_path / "data"),
    }
    yield env
    redis.stop()


def prepare(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.inference_worker.prepare", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_worker_loads_what_prepare_converted(prepared_env, start_worker):
    first = prepare(prepared_env)
    assert first.returncode == 0, first.stderr[-3000:]
    prepared = json.loads(first.stdout)
    assert prepared["engine"] == "onnxruntime"
    assert prepared["converted"] and os.path.exists(os.path.join(prepared["converted"], "model.onnx")), prepared
    assert "converting the model" in first.stderr
    # A second pod's init container finds it done.
    again = prepare(prepared_env)
    assert again.returncode == 0 and json.loads(again.stdout)["converted"] == prepared["converted"]
    assert "converting the model" not in again.stderr
    # The worker loads the conversion; it converts nothing itself.
    worker = start_worker(prepared_env)
    assert "model loaded" in worker.log_text()
    assert "converting the model" not in worker.log_text()


def test_with_candidates_on_the_classifier_is_exported_before_the_worker_starts(prepared_env, start_worker, tmp_path):
    from tests.scraper.tiny_classifier import make_tiny_classifier

    classifier = make_tiny_classifier(tmp_path / "tox", ["привет анон", "ну ты и дурак"])
    env = {**prepared_env, "INFERENCE_CANDIDATES_INTERACTIVE": "4", "RERANKER_TOXICITY_MODEL": str(classifier)}
    done = prepare(env)
    assert done.returncode == 0, done.stderr[-3000:]
    exported = json.loads(done.stdout)["classifier"]
    assert exported and os.path.exists(os.path.join(exported, "model.onnx")), done.stdout
    worker = start_worker(env)
    worker.stop()
    assert "toxicity classifier loaded" in worker.log_text()
    assert "converting the toxicity classifier" not in worker.log_text()
    # Candidates off (the default; the tests' environment turns them on): nothing to export.
    off = {**env, "INFERENCE_CANDIDATES_INTERACTIVE": "1", "INFERENCE_CANDIDATES_BULK": "1"}
    assert "classifier" not in json.loads(prepare(off).stdout)


def test_a_published_version_is_prepared_before_activation(prepared_env, tiny_model_dir, tmp_path):
    version = shutil.copytree(tiny_model_dir, tmp_path / "store" / "v2")
    done = prepare(prepared_env, "--version", "v2")
    assert done.returncode == 0, done.stderr[-3000:]
    prepared = json.loads(done.stdout)
    assert prepared["version"] == "v2" and prepared["path"] == str(version)
    assert os.path.exists(os.path.join(prepared["converted"], "model.onnx"))


def test_nothing_to_prepare_is_a_clear_failure(prepared_env, tmp_path):
    missing = prepare({**prepared_env, "MODEL_NAME_OR_PATH": str(tmp_path / "no-such-model")})
    assert missing.returncode == 2
    assert "no such folder" in missing.stderr
    bad_name = prepare(prepared_env, "--version", "../etc")
    assert bad_name.returncode == 2 and "bad version name" in bad_name.stderr
