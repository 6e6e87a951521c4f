"""The bundled demo model: its corpus, its tokenizer, a (shortened) build and what it generates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from services.inference_worker.demo_model import corpus
from services.inference_worker.demo_model.build import (
    METADATA_FILE,
    build_demo_model,
    ensure_demo_model,
    is_built,
    sample_replies,
    train_tokenizer,
)

# Enough training for the model to have learnt words; the full build uses DEFAULT_STEPS.
SHORT_STEPS = 250

CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
LETTER = re.compile(r"[^\W\d_]")


@pytest.fixture(scope="module")
def short_model(tmp_path_factory) -> Path:
    return build_demo_model(tmp_path_factory.mktemp("demo") / "model", steps=SHORT_STEPS, progress=False)


def test_corpus_has_enough_well_formed_dialogs():
    dialogs = corpus.demo_dialogs()
    assert len(corpus._handwritten()) >= 150
    assert len({tuple(d) for d in dialogs}) == len(dialogs) >= 150
    for dialog in dialogs:
        assert 2 <= len(dialog) <= 4, dialog
        assert all(turn and turn == turn.strip() for turn in dialog), dialog


def test_corpus_and_tokenizer_are_deterministic():
    dialogs = corpus.demo_dialogs()
    assert corpus.demo_dialogs() == dialogs
    first, second = train_tokenizer(dialogs), train_tokenizer(dialogs)
    assert first.get_vocab() == second.get_vocab()
    sample = "|0|1|привет анон<|endoftext|>|1|1|"
    assert first.encode(sample) == second.encode(sample)
    assert first.convert_ids_to_tokens(first.encode("<|endoftext|>")) == ["<|endoftext|>"]


def test_build_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    a = build_demo_model(tmp_path / "a", seed=7, steps=3, progress=False)
    b = build_demo_model(tmp_path / "b", seed=7, steps=3, progress=False)
    weights_a, weights_b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(weights_a[k].equal(weights_b[k]) for k in weights_a)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_short_build_is_complete_and_learnt(short_model):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(short_model)
    config = AutoConfig.from_pretrained(short_model)
    assert len(tokenizer) == config.vocab_size
    assert tokenizer.eos_token == "<|endoftext|>" and config.eos_token_id == tokenizer.eos_token_id

    meta = json.loads((short_model / METADATA_FILE).read_text())
    assert meta["steps"] == SHORT_STEPS and meta["seed"] == 1234
    assert meta["final_loss"] < meta["initial_loss"] / 2
    # Built in a temporary folder and renamed: nothing else is left beside it.
    assert [p.name for p in short_model.parent.iterdir()] == [short_model.name]


def test_short_build_replies_in_russian_words(short_model):
    replies = [r for seed in range(2) for r in sample_replies(short_model, seed=seed)]
    assert sum(bool(r) for r in replies) >= len(replies) // 2
    assert all(CYRILLIC.search(r) for r in replies if r)
    letters = "".join(LETTER.findall("".join(replies)))
    assert len(CYRILLIC.findall(letters)) >= 0.9 * len(letters)
    assert "\ufffd" not in "".join(replies)  # no broken bytes


def test_rebuild_replaces_the_folder(tmp_path):
    out = build_demo_model(tmp_path / "model", steps=1, progress=False)
    (out / "stale.txt").write_text("from the previous build")
    build_demo_model(out, steps=1, progress=False)
    assert is_built(out) and not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_ensure_reuses_a_built_model(short_model):
    stamp = (short_model / METADATA_FILE).stat().st_mtime_ns
    assert ensure_demo_model(short_model) == short_model
    assert (short_model / METADATA_FILE).stat().st_mtime_ns == stamp


def test_an_unfinished_folder_is_not_built(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert not is_built(tmp_path)


def test_ensure_builds_a_missing_model_in_a_child_process(tmp_path):
    """A worker that falls back to the demo model must not keep torch's training memory: the build
    runs in a child, and the calling process never imports torch."""
    import subprocess
    import sys

    out = tmp_path / "demo"
    script = (
        "import sys; from pathlib import Path; "
        "from services.inference_worker.demo_model.build import ensure_demo_model; "
        f"ensure_demo_model(Path({str(out)!r}), steps=3); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert is_built(out) and json.loads((out / METADATA_FILE).read_text())["steps"] == 3
