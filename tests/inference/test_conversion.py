"""Conversion for the fast backends (ONNX Runtime, CTranslate2): refused with a clear message when
the tokenizer does not fit the model, cached beside the checkpoint (or in the cache folder when it
is read-only), reused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from services.inference_worker.backends import BackendOptions, load_backend
from services.inference_worker.conversion import META_FILE, ConversionError, ensure_converted, read_meta
from shared.schemas import GenerationParams
from tests.model_factory import make_tiny_gpt2


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target, ignore=shutil.ignore_patterns("ct2-*", ".ct2-*", "onnx-*", ".onnx-*"))
    return target


@pytest.mark.parametrize("engine", ["onnxruntime", "ctranslate2"])
def test_special_tokens_past_the_model_are_served(model_copy: Path, engine: str):
    """As the published checkpoint's `<|endoftext|>`: special tokens one past the model's rows are
    never fed (special-token matching is off for text) nor sampled, so the checkpoint converts."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_copy)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|sage|>", "<|bump|>"]})
    tokenizer.save_pretrained(model_copy)
    vocab = json.loads((model_copy / "config.json").read_text())["vocab_size"]
    assert len(tokenizer) == vocab + 2

    backend = load_backend(engine, model_copy, BackendOptions(threads=1))
    ids = backend.codec.prompt(["<|sage|> двач <|bump|>", "привет"])
    assert max(ids) < vocab
    assert backend.continue_prompts([ids], GenerationParams(max_new_tokens=4, seed=1))[0].text is not None


@pytest.mark.parametrize("engine,folder", [("onnxruntime", "onnx-int8"), ("ctranslate2", "ct2-int8")])
@pytest.mark.parametrize(
    "change,named",
    [
        (lambda t: t.add_tokens(["сажаемся"]), "'сажаемся'"),  # a plain added token is matched in text
        (lambda t: t.add_special_tokens({"eos_token": "<|end|>"}), "'<|end|>'"),  # eos is fed after every turn
    ],
)
def test_a_tokenizer_that_would_feed_ids_past_the_model_is_refused_clearly(
    model_copy: Path, engine: str, folder: str, change, named: str
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_copy)
    change(tokenizer)
    tokenizer.save_pretrained(model_copy)
    vocab = json.loads((model_copy / "config.json").read_text())["vocab_size"]

    with pytest.raises(ConversionError) as refused:
        ensure_converted(model_copy, "int8", engine=engine)
    message = str(refused.value)
    assert named in message and f"past the model's {vocab} rows" in message
    assert not (model_copy / folder).exists()  # nothing half-written is left behind
    assert not list(model_copy.glob(f".{folder}.tmp-*"))


def test_onnx_conversion_is_cached_and_reused(model_copy: Path):
    first = ensure_converted(model_copy, "int8", engine="onnxruntime")
    assert first == model_copy.resolve() / "onnx-int8"
    graph = (first / "model.onnx").stat()
    assert read_meta(first)["engine"] == "onnxruntime"
    backend = load_backend("onnxruntime", model_copy, BackendOptions(threads=1))
    assert backend.converted_dir == first
    assert (first / "model.onnx").stat().st_mtime_ns == graph.st_mtime_ns  # not converted again
    # The other engine's conversion lives beside it and does not replace it.
    assert ensure_converted(model_copy, "int8", engine="ctranslate2") == model_copy.resolve() / "ct2-int8"
    assert (first / "model.onnx").exists()


def test_a_gpt2_variant_the_graph_cannot_express_is_refused_clearly(model_copy: Path):
    config = json.loads((model_copy / "config.json").read_text())
    config["scale_attn_by_inverse_layer_idx"] = True
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="scale_attn_by_inverse_layer_idx=true is not supported"):
        ensure_converted(model_copy, "int8", engine="onnxruntime")
    # auto then takes the next backend that loads it.
    assert load_backend("auto", model_copy, BackendOptions(threads=1)).name == "ctranslate2"


def test_auto_backend_falls_back_to_transformers_when_conversion_fails(model_copy: Path):
    # An activation neither fast engine implements; transformers runs any of its own.
    config = json.loads((model_copy / "config.json").read_text())
    config["activation_function"] = "sigmoid"
    (model_copy / "config.json").write_text(json.dumps(config))
    assert load_backend("auto", model_copy, BackendOptions(threads=1)).name == "transformers"


def test_conversion_is_cached_beside_the_checkpoint_and_reused(model_copy: Path):
    first = ensure_converted(model_copy, "int8", engine="ctranslate2")
    assert first == model_copy.resolve() / "ct2-int8"
    meta = read_meta(first)
    model_bin = (first / "model.bin").stat()
    assert ensure_converted(model_copy, "int8", engine="ctranslate2") == first
    assert read_meta(first) == meta  # not converted again
    assert (first / "model.bin").stat().st_mtime_ns == model_bin.st_mtime_ns
    backend = load_backend("ctranslate2", model_copy, BackendOptions(threads=1))
    assert backend.converted_dir == first


def test_changed_checkpoint_is_converted_again(model_copy: Path, tmp_path: Path):
    first = ensure_converted(model_copy, "int8", engine="ctranslate2")
    before = read_meta(first)
    # A retrained checkpoint lands in the same folder: new weights, same name.
    retrained = make_tiny_gpt2(tmp_path / "retrained", seed=1)
    shutil.copy2(retrained / "model.safetensors", model_copy / "model.safetensors")
    again = ensure_converted(model_copy, "int8", engine="ctranslate2")
    assert again == first
    assert read_meta(again)["fingerprint"] != before["fingerprint"]


def test_read_only_checkpoint_is_converted_into_the_cache_dir(model_copy: Path, tmp_path: Path):
    """A hub snapshot may be read-only: the conversion goes to the cache folder instead.
    The folder is made immutable (chattr +i), which stops root too (tests run as root here)."""
    cache = tmp_path / "cache"
    if subprocess.run(["chattr", "+i", str(model_copy)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        assert not os.access(model_copy, os.W_OK)
        out = ensure_converted(model_copy, "int8", cache, engine="ctranslate2")
        backend = load_backend("ctranslate2", model_copy, BackendOptions(threads=1, cache_dir=cache))
    finally:
        subprocess.run(["chattr", "-i", str(model_copy)], check=True)
    assert cache in out.parents and (out / "model.bin").exists() and (out / META_FILE).exists()
    assert backend.converted_dir == out
    assert not (model_copy / "ct2-int8").exists()


def test_a_checkpoint_with_exact_gelu_converts_and_matches_transformers(model_copy: Path):
    """GPT-2 configs may say `gelu` (erf) instead of `gelu_new` (tanh): the graph follows it
    (the logits match transformers' to float32 rounding, closer than the tanh form would)."""
    import numpy as np
    import torch
    from transformers import GPT2LMHeadModel

    reference = GPT2LMHeadModel.from_pretrained(model_copy)
    reference.config.activation_function = "gelu"
    with torch.no_grad():  # pre-activations of a few units, where erf and tanh forms differ
        for block in reference.transformer.h:
            block.mlp.c_fc.weight.mul_(60)
    reference.save_pretrained(model_copy)
    reference = GPT2LMHeadModel.from_pretrained(model_copy).eval()
    fp32 = load_backend("onnxruntime", model_copy, BackendOptions(threads=1, quantization="float32"))
    for text in ("двач не торт", "анон скинь кота", "сажа"):
        ids = fp32.encode(text)
        with torch.inference_mode():
            expected = reference(torch.tensor([ids])).logits[0, -1].numpy()
        # measured: 2e-7 with erf, 1e-5 with the tanh form
        assert np.abs(fp32.next_token_logits(ids) - expected).max() < 2e-6
