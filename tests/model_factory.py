"""Tiny models made at test time with the real transformers and tokenizers classes.

They have random weights: the tests check the plumbing (prompt, generation, cutting, queues),
not the quality of the text. The demo model (services/inference_worker/demo_model) is the trained one.
"""

from __future__ import annotations

from pathlib import Path

TINY_CORPUS = [
    "привет анон как дела",
    "нормально а у тебя что нового",
    "сажа тебе в тред",
    "ты что несёшь вообще",
    "двач не тот уже",
    "скинь картинку с котом",
    "кот лучше собаки очевидно",
    "бамп годному треду",
    "где пруфы билли",
    "пошёл работать завтра рано вставать",
] * 20


def make_tiny_gpt2(out_dir: Path, *, vocab_size: int = 600, n_layer: int = 2, n_embd: int = 64, seed: int = 0) -> Path:
    """Save a tiny GPT-2 (byte-level BPE tokenizer whose size equals the model's vocabulary)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TINY_CORPUS, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"])
    # transformers 5 builds a fast tokenizer from a `tokenizers` object, not from vocab/merges paths.
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=512,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
