"""Tiny models made at test time with the real transformers and tokenizers classes.

They have random weights: the tests check the plumbing (prompt, generation, cutting, queues),
not the quality of the text. The demo model (services/inference_worker/demo_model) is the trained one.
"""

from __future__ import annotations

import os
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
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TINY_CORPUS, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"])
    # transformers 5 builds a fast tokenizer from a `tokenizers` object, not from vocab/merges paths.
    tokenizer = GPT2Tokenizer(
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


# --- the published checkpoint's layout -------------------------------------------------------------

HUB_REFERENCE_DIR = (
    Path(os.environ.get("DVACH_HUB_REFERENCE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "hub"))
    / "rudialogpt3_medium_based_on_gpt2_2ch"
)
RUGPT3_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]  # ids 0-4 of ruGPT-3's vocab.json
# Logit bias of the fixture's output head: a server that does not ban these (or stop at </s>) shows them.
SPECIAL_BIAS = {"<pad>": 6.0, "<s>": 4.0, "<unk>": 4.0, "<mask>": 4.0, "</s>": 1.5}


def make_hub_layout_gpt2(
    out_dir: Path,
    *,
    reference_dir: Path = HUB_REFERENCE_DIR,
    vocab_size: int = 400,
    n_layer: int = 2,
    n_embd: int = 64,
    weights: str = "bin",
    bias_specials: bool = True,
    seed: int = 0,
) -> Path:
    """A tiny GPT-2 laid out as `BlackSamorez/rudialogpt3_medium_based_on_gpt2_2ch` is on the hub.

    - the tokenizer as vocab.json + merges.txt (no tokenizer.json), `<pad> <s> </s> <unk> <mask>`
      as ids 0-4 of vocab.json and no `<|endoftext|>` in it, so that transformers adds
      `<|endoftext|>` one past the model's rows (len(tokenizer) == vocab_size + 1);
    - `config.json`, `tokenizer_config.json`, `special_tokens_map.json` as the hub holds them
      (read from `reference_dir`), with the sizes made tiny and `eos_token_id` an ordinary token
      (the last one, as 50256 is there);
    - random weights saved only as `pytorch_model.bin` (`weights="safetensors"`: only
      model.safetensors; `"both"`: both), the output head biased toward the special tokens
      (SPECIAL_BIAS) through the final layer norm's bias and the tied embedding rows.
    """
    import json
    import shutil

    import torch
    from safetensors.torch import save_file
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TINY_CORPUS, vocab_size=vocab_size, min_frequency=1, special_tokens=RUGPT3_SPECIALS)
    bpe.save_model(str(out_dir))  # vocab.json + merges.txt only
    vocab = json.loads((out_dir / "vocab.json").read_text())
    assert [vocab[t] for t in RUGPT3_SPECIALS] == [0, 1, 2, 3, 4] and "<|endoftext|>" not in vocab
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(reference_dir / name, out_dir / name)
    config = json.loads((reference_dir / "config.json").read_text())
    config.update(
        vocab_size=len(vocab),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=2,
        bos_token_id=len(vocab) - 1,
        eos_token_id=len(vocab) - 1,
    )
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config.from_dict(config))
    if bias_specials:
        with torch.no_grad():
            direction = torch.nn.functional.normalize(torch.randn(n_embd), dim=0)
            model.transformer.ln_f.bias.copy_(3.0 * direction)
            for token, bias in SPECIAL_BIAS.items():
                model.transformer.wte.weight[vocab[token]] = direction * (bias / 3.0)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights in ("bin", "both"):
        torch.save(state, out_dir / "pytorch_model.bin")
    if weights in ("safetensors", "both"):
        state.pop("lm_head.weight", None)  # tied to wte, as transformers saves it
        save_file(state, out_dir / "model.safetensors", metadata={"format": "pt"})
    return out_dir


# --- a model biased toward the failures the reranker rejects ---------------------------------------

BIAS_TURNS = [
    "привет анон как дела",
    "двач не тот уже",
    "скинь картинку с котом",
    "где пруфы билли",
    "ты что несёшь вообще",
    "пошёл работать завтра рано вставать",
]
LOOP_REPLY = "сажа сажа сажа сажа сажа сажа сажа"
FIXED_REPLY = "бамп годному треду"  # the tests pass it as the chat's recent reply: a repeat
GOOD_REPLY = "нормально а у тебя что нового"


def make_biased_gpt2(out_dir: Path, *, steps: int = 100, seed: int = 0) -> Path:
    """A tiny GPT-2 trained so that, to each of BIAS_TURNS, it answers with (about) equal odds an
    echo of the turn, LOOP_REPLY, FIXED_REPLY or GOOD_REPLY: three of four samples fail a hard rule
    of the reranker (echo, loop, repeat of a recent reply when FIXED_REPLY is one)."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from shared.tokenization import TextCodec

    make_tiny_gpt2(out_dir, n_layer=2, n_embd=64, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = GPT2LMHeadModel.from_pretrained(out_dir)
    codec = TextCodec.from_transformers(tokenizer, model.config.vocab_size)
    rows = [
        codec.prompt([turn], "1") + codec.encode(reply) + [codec.eos_id]
        for turn in BIAS_TURNS
        for reply in (turn, LOOP_REPLY, FIXED_REPLY, GOOD_REPLY)
    ]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [codec.eos_id] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in rows])
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(out_dir)
    return Path(out_dir)
