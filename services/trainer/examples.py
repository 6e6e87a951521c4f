"""Training examples: dialogs rendered in the model's prompt format, tokenized, with loss labels.

One dialog (newest first) is one example: its context turns oldest to newest, then the reply,
as `shared.prompt` renders it and `shared.tokenization.TextCodec.example` turns it into ids:

    |0|{len}|{older}<eos>|1|{len}|{newer}<eos>...|1|{len}|{reply}<eos>

Turns are plain text (speaker markers and special-token strings removed, special-token matching
off), eos is the tokenizer's eos id, and no id reaches past the model's rows: a tokenizer one
entry larger than the model, as the base model's is (`<|endoftext|>` added as id 50257), is used
as it is, without resizing the embeddings, because the added token is special and never appears
in an example. That keeps a fine-tune the shape of its base and of the published model (50257
rows), so it converts and serves like them.

With `reply_only` (the default) only the reply's tokens and its eos carry a label; the context and
the speaker/length markers are given at inference time, so they get -100 (no loss). Padding is
always -100 and masked out of attention.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from services.trainer.data import DialogRecord
from shared.prompt import build_prompt
from shared.tokenization import TextCodec

IGNORE_INDEX = -100  # torch's CrossEntropyLoss ignore_index: positions that never count


@dataclass(frozen=True)
class Example:
    text: str
    input_ids: list[int]
    labels: list[int]

    @property
    def reply_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


class ExampleBuilder:
    """Turns dialogs into tokenized examples for one tokenizer (any fast GPT-2-family tokenizer) and
    a model of `vocab_size` rows (default: the tokenizer's size)."""

    def __init__(
        self,
        tokenizer,
        *,
        vocab_size: int | None = None,
        max_length: int = 512,
        max_turn_tokens: int = 256,
        reply_only: bool = True,
    ):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast tokenizer is needed")
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has no eos token; the prompt format needs one")
        self.codec = TextCodec.from_transformers(tokenizer, vocab_size or len(tokenizer))
        self.max_length = max_length
        self.max_turn_tokens = max_turn_tokens
        self.reply_only = reply_only
        self.eos = tokenizer.eos_token

    def count_tokens(self, text: str) -> int:
        return self.codec.count_tokens(text)

    def _cut_turn(self, text: str) -> str:
        # Keep a long turn's start, as the worker does: that is what the next poster answered.
        text = self.codec.clean(text)
        ids = self.codec.encode(text)
        if len(ids) <= self.max_turn_tokens:
            return text
        return self.codec.decode(ids[: self.max_turn_tokens]).replace("\ufffd", "").strip()

    def render(self, turns: Sequence[str]) -> str:
        """The example as text (for reading, the data hash and reports)."""
        return build_prompt(list(turns[1:]), self.count_tokens, self.eos, reply=turns[0])

    def build(self, turns: Sequence[str]) -> Example:
        """One tokenized example from a dialog (newest first, at least two turns)."""
        if len(turns) < 2:
            raise ValueError("an example needs a reply and at least one turn of context")
        turns = [self._cut_turn(t) for t in turns]
        while True:
            input_ids, reply_start = self.codec.example(turns[1:], turns[0])
            if len(input_ids) <= self.max_length or len(turns) <= 2:
                break
            turns = turns[:-1]  # too long: drop the oldest context turn, as the worker does
        labels = [IGNORE_INDEX] * reply_start + input_ids[reply_start:] if self.reply_only else list(input_ids)
        if len(input_ids) > self.max_length:  # even one context turn is too long: keep the end
            input_ids, labels = input_ids[-self.max_length :], labels[-self.max_length :]
        assert max(input_ids) < self.codec.vocab_size, "TextCodec keeps every id inside the model"
        return Example(self.render(turns), input_ids, labels)

    def build_all(self, dialogs: Sequence[DialogRecord]) -> list[Example]:
        return [self.build(d.turns) for d in dialogs]


def data_hash(examples: Sequence[Example]) -> str:
    """sha256 over the examples' texts in order: the identity of a run's training data."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(example.text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def split(
    examples: Sequence[Example], eval_fraction: float, max_eval: int, seed: int
) -> tuple[list[Example], list[Example]]:
    """A held-out split, the same for the same examples and seed: (train, eval)."""
    if len(examples) < 2:
        raise ValueError(f"need at least 2 examples to hold some out, got {len(examples)}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = min(max_eval, max(1, round(len(examples) * eval_fraction)), len(examples) - 1)
    held = set(order[:n_eval])
    train = [e for i, e in enumerate(examples) if i not in held]
    evaluation = [examples[i] for i in sorted(held)]
    return train, evaluation


class ExampleDataset:
    """A map-style dataset of examples for transformers' Trainer."""

    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        return {"input_ids": example.input_ids, "labels": example.labels}


class PadCollator:
    """Right-pads a batch: pad ids under a zero attention mask and -100 labels (never counted)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        input_ids, attention, labels = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            input_ids.append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            attention.append([1] * len(f["input_ids"]) + [0] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "attention_mask": torch.tensor(attention, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }
