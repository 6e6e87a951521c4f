"""Random-weight GPT-2 checkpoints of the real architectures, for measuring speed (not quality).

`355m`: 24 layers, 1024 wide, 16 heads (the served model's shape); `1.3b`: 24 layers, 2048 wide,
16 heads. Both with GPT-2's vocabulary size (50257) and a byte-level BPE tokenizer of exactly
that size, built programmatically (256 bytes + 50000 merges of byte pairs + `<|endoftext|>`),
so CTranslate2's converter accepts it. Cached by size under the bench cache folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SIZES: dict[str, dict[str, Any]] = {"355m": {"n_embd": 1024, "n_head": 16}, "1.3b": {"n_embd": 2048, "n_head": 16}}
VOCAB_SIZE = 50257
EOS = "<|endoftext|>"


def byte_level_tokenizer(vocab_size: int = VOCAB_SIZE):
    """A GPT-2-style fast tokenizer whose `len()` is exactly `vocab_size` (eos is the last id)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Tokenizer

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    alphabet.sort()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges: list[tuple[str, str]] = []
    n_merges = vocab_size - len(alphabet) - 1
    # Merges of two byte symbols only: a valid BPE, enough of them to fill the vocabulary.
    for first in alphabet:
        for second in alphabet:
            if len(merges) == n_merges:
                break
            merges.append((first, second))
            vocab[first + second] = len(vocab)
    vocab[EOS] = len(vocab)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.add_special_tokens([EOS])
    tokenizer = GPT2Tokenizer(tokenizer_object=bpe, bos_token=EOS, eos_token=EOS, unk_token=EOS)
    assert len(tokenizer) == vocab_size, len(tokenizer)
    return tokenizer


def build_random_gpt2(size: str, cache_dir: Path, seed: int = 0) -> Path:
    """The folder of a random-weight GPT-2 of `size` (built once, then reused)."""
    out = Path(cache_dir) / f"random-gpt2-{size}"
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = byte_level_tokenizer()
    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_positions=1024,
        n_layer=24,
        bos_token_id=VOCAB_SIZE - 1,
        eos_token_id=VOCAB_SIZE - 1,
        **SIZES[size],
    )
    torch.manual_seed(seed)
    return save_once(out, GPT2LMHeadModel(config), tokenizer)


def save_once(out: Path, model, tokenizer) -> Path:
    """Save into `out` through a temporary folder: a run that built it meanwhile keeps its own."""
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():  # another run built it meanwhile
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


# Toxicity classifiers' shapes: `tiny` the reranker's default `cointegrated/rubert-tiny-toxicity`
# (3 layers, 312 wide, 5 labels, multi-label), `base` the scraper's `sismetanin/rubert-toxic-pikabu-2ch`
# (BERT-base: 12 layers, 768 wide).
CLASSIFIERS: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 312,
        "num_hidden_layers": 3,
        "num_attention_heads": 12,
        "intermediate_size": 600,
        "labels": ("non-toxic", "insult", "obscenity", "threat", "dangerous"),
    },
    "base": {"labels": ("neutral", "toxic")},  # BertConfig's defaults are BERT-base
}


def build_random_classifier(cache_dir: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """A random-weight toxicity classifier of one of the shapes of `CLASSIFIERS` with a word-level
    tokenizer, for measuring the reranker's cost (not its judgement). Built once, then reused."""
    out = Path(cache_dir) / ("random-bert-base-classifier" if shape == "base" else f"random-bert-{shape}-classifier")
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tests.scraper.tiny_classifier import word_level_tokenizer

    letters = "абвгдежзийклмнопрстуфхцчшщыьэюя"
    fast = word_level_tokenizer(sorted({a + b + c for a in letters for b in letters[:8] for c in letters[:8]}), 512)
    vocab = fast.get_vocab()
    torch.manual_seed(seed)
    dims = dict(CLASSIFIERS[shape])
    labels = dims.pop("labels")
    config = BertConfig(
        vocab_size=len(vocab),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **dims,
    )
    return save_once(out, BertForSequenceClassification(config), fast)
