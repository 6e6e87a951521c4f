"""Fixtures of the inference suite: small real models converted for the fast backends, real workers.

`trained_model_dir` is a tiny GPT-2 trained for a few seconds on the tiny corpus: random weights
give near-tied next-token scores that int8 rounding flips at random, a model that learned
something has margins like a real one (with random weights greedy tokens agree far less often).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.embedded import RedisServer
from tests.model_factory import TINY_CORPUS, make_tiny_gpt2

# Threads of the in-process backends: the suite runs beside other work on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def train_briefly(model_dir: Path, steps: int = 40, seed: int = 0) -> Path:
    """A few steps of next-token training on TINY_CORPUS, saved over the random weights."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = GPT2LMHeadModel.from_pretrained(model_dir)
    model.train()
    lines = sorted(set(TINY_CORPUS))
    text = tokenizer.eos_token.join(lines)
    ids = torch.tensor([tokenizer.encode(text)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory) -> Path:
    path = make_tiny_gpt2(tmp_path_factory.mktemp("trained-model") / "trained-gpt2", n_layer=2, n_embd=64)
    return train_briefly(path)


@pytest.fixture(scope="session")
def wider_model_dir(tmp_path_factory) -> Path:
    """A random GPT-2 large enough that a 60-token reply takes a noticeable while on one thread."""
    return make_tiny_gpt2(tmp_path_factory.mktemp("wider-model") / "wider-gpt2", n_layer=6, n_embd=384)


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of the test's own (a worker's queues and results, nothing shared)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
