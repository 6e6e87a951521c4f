"""The reranker's classifier on ONNX Runtime (shared/toxicity.py `OnnxToxicityScorer`): the same
scores as the torch classifier, exported once and reused, and no torch in the process that
scores (what keeps a worker with candidates on about 0.3 GB smaller: docs/inference.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.toxicity import OnnxToxicityScorer, ToxicityScorer, converted_classifier
from tests.processes import REPO
from tests.scraper.tiny_classifier import make_tiny_classifier

TEXTS = ["ну ты и дурак конечно", "привет анон", "иди работай", "двач не торт, а ты тем более"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    labels = ("non-toxic", "insult", "obscenity", "threat", "dangerous")  # rubert-tiny-toxicity's classes
    return make_tiny_classifier(tmp_path_factory.mktemp("tox") / "tiny", TEXTS, labels=labels)


def test_onnxruntime_scores_as_torch_does(classifier, tmp_path):
    reference = ToxicityScorer(str(classifier)).score(TEXTS)
    exact = OnnxToxicityScorer(str(classifier), cache_dir=tmp_path, quantization="float32")
    assert exact.toxic == ToxicityScorer(str(classifier)).toxic  # the same class, aggregate included
    assert exact.score(TEXTS) == pytest.approx(reference, abs=1e-5)
    int8 = OnnxToxicityScorer(str(classifier), cache_dir=tmp_path, quantization="int8")
    assert int8.score(TEXTS) == pytest.approx(reference, abs=0.02)
    # One text and a batch padded to the longest score alike (int8 activations take one scale per
    # batch, so within a rounding step; float32 exactly).
    assert [int8.score([t])[0] for t in TEXTS] == pytest.approx(int8.score(TEXTS), abs=1e-3)
    assert [exact.score([t])[0] for t in TEXTS] == pytest.approx(exact.score(TEXTS), abs=1e-6)


def test_the_export_is_made_once_and_again_when_the_model_changes(classifier, tmp_path):
    first = converted_classifier(str(classifier), tmp_path, "int8")
    made = (first / "meta.json").stat().st_mtime_ns
    assert converted_classifier(str(classifier), tmp_path, "int8") == first
    assert (first / "meta.json").stat().st_mtime_ns == made  # reused, not converted again
    assert json.loads((first / "meta.json").read_text())["quantization"] == "int8"
    config = classifier / "config.json"
    config.write_text(config.read_text())  # a retrained model in the same folder
    os.utime(config, (made / 1e9 + 10, made / 1e9 + 10))
    assert converted_classifier(str(classifier), tmp_path, "int8") != first


def test_a_model_that_does_not_export_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"converting .* to ONNX failed"):
        converted_classifier(str(tmp_path / "no-such-model"), tmp_path / "cache", "int8")


def test_scoring_on_onnxruntime_loads_no_torch(classifier, tmp_path):
    converted_classifier(str(classifier), tmp_path, "int8")  # the export itself needs torch: a child of its own
    code = (
        "import sys; from pathlib import Path; from shared.toxicity import OnnxToxicityScorer; "
        f"s = OnnxToxicityScorer({str(classifier)!r}, cache_dir=Path({str(tmp_path)!r})); "
        f"print(s.score({TEXTS!r})); print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    scores, torch_loaded = done.stdout.strip().splitlines()[-2:]
    assert len(json.loads(scores)) == len(TEXTS)
    assert torch_loaded == "False"


def test_the_default_classifier_comes_from_the_hub_as_it_holds_it(classifier, tmp_path):
    """`cointegrated/rubert-tiny-toxicity` from a stand-in hub (HF_ENDPOINT), laid out as published:
    weights as pytorch_model.bin only; fetched with its tokenizer and exported, one weights file."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from shared.settings import WorkerSettings
    from tests.hub_server import HubServer

    repo = tmp_path / "repo"
    shutil.copytree(classifier, repo)
    torch.save(load_file(str(repo / "model.safetensors")), repo / "pytorch_model.bin")
    (repo / "model.safetensors").unlink()
    name = WorkerSettings.model_fields["reranker_toxicity_model"].default
    code = (
        "from pathlib import Path; from shared.toxicity import converted_classifier; "
        f"print(converted_classifier({name!r}, Path({str(tmp_path / 'cache')!r}), 'int8'))"
    )
    with HubServer() as hub:
        hub.add_repo(name, repo)
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
        done = subprocess.run(
            [sys.executable, "-c", code], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        weights = hub.repos[name].files["pytorch_model.bin"]
        assert hub.fetched("/cdn/" + weights.sha256) == 1 and hub.fetched("config.json") >= 1
    exported = Path(done.stdout.strip().splitlines()[-1])
    assert {"model.onnx", "tokenizer.json", "config.json", "meta.json"} <= {f.name for f in exported.iterdir()}
    assert json.loads((exported / "config.json").read_text())["id2label"]["4"] == "dangerous"
    assert json.loads((exported / "meta.json").read_text())["quantization"] == "int8"
