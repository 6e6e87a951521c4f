"""The worker's download path against a hub that answers as the real one does: the published
checkpoint's files (weights only as pytorch_model.bin) arrive, one weight format and never two,
progress is logged, a cached copy serves when the hub is gone, and a hub that says "no such model"
is an error rather than a silent demo model."""

from __future__ import annotations

import json
import shutil

from shared.embedded import free_port
from shared.settings import DEFAULT_MODEL
from tests.hub.conftest import fetch_model, fetched_source, hub_env
from tests.hub_server import HubServer
from tests.model_factory import make_hub_layout_gpt2


def test_published_layout_arrives_with_its_bin_weights(hub, tmp_path):
    env = hub_env(hub, tmp_path / "hf")
    done = fetch_model(env, DEFAULT_MODEL)
    source = fetched_source(done)
    folder = tmp_path / "hf"
    files = {p.name for p in (folder / "hub").rglob("snapshots/*/*")}
    assert files == {
        "config.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.json",
        "merges.txt",
        "pytorch_model.bin",
    }
    assert source["version"] == DEFAULT_MODEL and source["fallback"] is False
    assert hub.fetched("/cdn/" + _sha(hub, DEFAULT_MODEL, "pytorch_model.bin")) == 1
    progress = [json.loads(line) for line in done.stderr.splitlines() if '"logger": "progress"' in line]
    assert any(p["task"] == "model download" and p.get("percent") == 100.0 for p in progress), done.stderr[-2000:]

    # A second start takes the cache: the weights are not fetched again.
    assert fetched_source(fetch_model(env, DEFAULT_MODEL))["path"] == source["path"]
    assert hub.fetched("/cdn/" + _sha(hub, DEFAULT_MODEL, "pytorch_model.bin")) == 1


def test_an_unreachable_hub_serves_the_cached_copy(hub, tmp_path):
    env = hub_env(hub, tmp_path / "hf")
    first = fetched_source(fetch_model(env, DEFAULT_MODEL))
    nothing = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on
    done = fetch_model({**env, "HF_ENDPOINT": nothing}, DEFAULT_MODEL)
    assert fetched_source(done)["path"] == first["path"]
    assert "serving the cached copy" in done.stderr


def test_safetensors_are_preferred_and_never_fetched_beside_the_bin(hub_reference, tmp_path):
    both = make_hub_layout_gpt2(tmp_path / "both", weights="both", reference_dir=hub_reference)
    with HubServer() as hub:
        hub.add_repo("someone/both-formats", both)
        source = fetched_source(fetch_model(hub_env(hub, tmp_path / "hf"), "someone/both-formats"))
        names = {p.name for p in (tmp_path / "hf").rglob("snapshots/*/*")}
        assert "model.safetensors" in names and "pytorch_model.bin" not in names
        assert hub.fetched("/cdn/" + _sha(hub, "someone/both-formats", "pytorch_model.bin")) == 0
        assert source["fallback"] is False


def test_no_such_model_and_no_weights_are_errors_not_the_demo_model(published_layout, tmp_path):
    weightless = tmp_path / "weightless"
    shutil.copytree(published_layout, weightless, ignore=shutil.ignore_patterns("*.bin"))
    with HubServer() as hub:
        hub.add_repo("someone/no-weights", weightless)
        env = {**hub_env(hub, tmp_path / "hf"), "DEMO_MODEL_DIR": str(tmp_path / "demo")}
        missing = fetch_model(env, "nobody/nothing-here")
        assert missing.returncode == 2 and "has no (accessible) model 'nobody/nothing-here'" in missing.stderr
        empty = fetch_model(env, "someone/no-weights")
        assert empty.returncode == 2 and "no weights transformers can load" in empty.stderr
        assert "pytorch_model.bin" in empty.stderr  # it says what it looked for
    assert not (tmp_path / "demo").exists()


def _sha(hub: HubServer, repo: str, path: str) -> str:
    return hub.repos[repo].files[path].sha256
