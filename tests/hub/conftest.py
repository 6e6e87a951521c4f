"""Fixtures of the published-model suite: checkpoints laid out as the hub holds them, served by a
stand-in hub on loopback (tests/hub_server.py), and the environment that points huggingface_hub
(and so the worker, the trainer and transformers) at it.

The three JSON files of the published model are read from ../shared/data/hub (see
tests/model_factory.py); without them these tests skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import DEFAULT_BASE_MODEL, DEFAULT_MODEL
from tests.hub_server import HubServer
from tests.model_factory import HUB_REFERENCE_DIR, make_hub_layout_gpt2
from tests.processes import REPO


@pytest.fixture(scope="session")
def hub_reference() -> Path:
    if not (HUB_REFERENCE_DIR / "config.json").exists():
        pytest.skip(f"{HUB_REFERENCE_DIR} (the published model's JSON files) is not here")
    return HUB_REFERENCE_DIR


@pytest.fixture(scope="session")
def published_layout(hub_reference, tmp_path_factory) -> Path:
    """A tiny model laid out as BlackSamorez/rudialogpt3_medium_based_on_gpt2_2ch: weights only as
    pytorch_model.bin, vocab.json + merges.txt, an output head biased toward the special tokens."""
    return make_hub_layout_gpt2(tmp_path_factory.mktemp("published") / "repo", reference_dir=hub_reference)


@pytest.fixture(scope="session")
def hub(published_layout) -> Iterator[HubServer]:
    """The stand-in hub, holding the published model and the base model under their real names."""
    with HubServer() as server:
        server.add_repo(DEFAULT_MODEL, published_layout)
        server.add_repo(DEFAULT_BASE_MODEL, published_layout)  # same layout and shape as the base
        yield server


def hub_env(hub: HubServer, cache: Path) -> dict[str, str]:
    """What points huggingface_hub at the stand-in hub, with a cache of its own."""
    return {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}


def fetch_model(env: dict[str, str], name: str) -> subprocess.CompletedProcess:
    """`python -m services.inference_worker.model_source` for `name`: the worker's download path."""
    full = {**os.environ, **env, "MODEL_NAME_OR_PATH": name, "LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "services.inference_worker.model_source"],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fetched_source(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
