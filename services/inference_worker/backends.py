"""Inference backends: one interface, one class per engine (the reference is transformers).

A backend owns the loaded weights and the tokenizer and turns a batch of prompts into
continuations; everything about dialogs and prompt text lives in `generation.py`.
Sampling parameters mean the same in every backend.
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.schemas import GenerationParams
from shared.tokenization import TextCodec

log = logging.getLogger(__name__)


@dataclass
class Continuation:
    token_ids: list[int]  # new tokens only, without the prompt
    text: str


SEED_STRIDE = 1_000_003  # candidate i of a seeded job draws with seed + i * SEED_STRIDE (attempts add 1)


def candidate_params(params: GenerationParams, index: int) -> GenerationParams:
    """The parameters of candidate `index` of a seeded job (candidate 0: the job's own)."""
    if params.seed is None or index == 0:
        return params
    return params.model_copy(update={"seed": params.seed + index * SEED_STRIDE})


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class BackendOptions:
    """How a backend uses the machine (settings: the `# --- inference` block; docs/inference.md).

    `threads` is the cores the process may use (0 = its CPU affinity). `lanes` is how many
    generations run at once on one copy of the weights (0 = the backend's best for `threads`);
    `threads_per_lane` the threads each of them uses (0 = the backend's best).
    """

    threads: int = 0
    lanes: int = 0
    threads_per_lane: int = 0
    quantization: str = "int8"
    kv_cache: str = "int8"  # onnxruntime's int8 graphs: the key/value cache's type (INFERENCE_KV_CACHE)
    cache_dir: Path | None = None
    spin_wait: bool = True  # onnxruntime's threads spin between operators (INFERENCE_SPIN_WAIT)

    @property
    def cores(self) -> int:
        return self.threads or usable_cores()


class Backend(ABC):
    """A loaded model that can continue prompts. One instance per worker process.

    `lanes` generations may run at once (each `continue_prompts` call is one, from its own thread);
    a backend with one lane is called from one thread at a time. `codec` turns text into the model's
    ids and generated ids into reply text (shared/tokenization.py): every backend bans
    `codec.banned_ids` and stops at `codec.eos_id`.
    """

    name: str = "abstract"
    lanes: int = 1
    codec: TextCodec

    def __init__(self, model_dir: Path, options: BackendOptions | None = None):
        self.model_dir = Path(model_dir)
        self.options = options or BackendOptions()
        self.load_seconds = 0.0

    @property
    def eos_token(self) -> str:
        return self.codec.eos_token

    def encode(self, text: str) -> list[int]:
        return self.codec.encode(text)

    def count_tokens(self, text: str) -> int:
        return self.codec.count_tokens(text)

    @abstractmethod
    def continue_prompts(self, prompts: list[list[int]], params: GenerationParams) -> list[Continuation]:
        """Sample a continuation of each prompt (token ids) with `params`; stop at eos."""

    def continue_candidates(
        self, prompts: list[list[int]], params: GenerationParams, n: int
    ) -> list[list[Continuation]]:
        """`n` sampled continuations of each prompt. Here each prompt is simply repeated `n` times
        in the batch; backends that can share one prefill between the candidates override it."""
        if n <= 1:
            return [[c] for c in self.continue_prompts(prompts, params)]
        if params.seed is not None:  # one seed per candidate, else all n would be the same reply
            per_candidate = [self.continue_prompts(prompts, candidate_params(params, i)) for i in range(n)]
            return [[per_candidate[i][j] for i in range(n)] for j in range(len(prompts))]
        outs = self.continue_prompts([p for p in prompts for _ in range(n)], params)
        return [outs[i * n : (i + 1) * n] for i in range(len(prompts))]

    def continuation(self, new_ids: list[int]) -> Continuation:
        return Continuation(list(new_ids), self.codec.reply_text(new_ids))


def model_vocab_size(model_dir: Path) -> int:
    """Rows of the checkpoint's embedding (config.json `vocab_size`)."""
    return int(json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"])


class ConvertedBackend(Backend):
    """A fast backend: serves `engine`'s conversion of the checkpoint (converted on first use,
    cached: conversion.py) and tokenizes with the `tokenizers` library alone, so neither torch
    nor transformers is loaded in the worker."""

    engine: str = ""

    def __init__(self, model_dir: Path, options: BackendOptions | None = None):
        super().__init__(model_dir, options)
        from tokenizers import Tokenizer

        from services.inference_worker.conversion import ensure_converted

        self._started = time.perf_counter()
        cache_dir = self.options.cache_dir or Path(model_dir).resolve().parent
        self.converted_dir = ensure_converted(
            Path(model_dir), self.options.quantization, cache_dir, engine=self.engine, kv_cache=self.options.kv_cache
        )
        meta = json.loads((self.converted_dir / "dvach-tokenizer.json").read_text())
        tokenizer = Tokenizer.from_file(str(self.converted_dir / "tokenizer.json"))
        self.codec = TextCodec.build(tokenizer, meta["eos_token"], model_vocab_size(model_dir))
        self.eos_token_id = self.codec.eos_id
        self.banned = np.asarray(self.codec.banned_ids, dtype=np.int64)

    def loaded(self) -> None:
        """Subclasses call this once their engine is ready."""
        self.load_seconds = time.perf_counter() - self._started


class TransformersBackend(Backend):
    """Plain transformers `generate` in float32: the reference (and the seed's way)."""

    name = "transformers"
    lanes = 1  # torch already spreads one generation over all threads

    def __init__(self, model_dir: Path, options: BackendOptions | None = None):
        super().__init__(model_dir, options)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        torch.set_num_threads(self.options.threads_per_lane or self.options.cores)
        self.threads = torch.get_num_threads()
        self._torch = torch
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        self.model.eval()
        self.codec = TextCodec.from_transformers(tokenizer, self.model.config.vocab_size)
        self.load_seconds = time.perf_counter() - started

    def continue_prompts(self, prompts: list[list[int]], params: GenerationParams) -> list[Continuation]:
        from shared.transformers_generate import generate_ids

        if params.seed is not None:
            self._torch.manual_seed(params.seed)
        # One prompt at a time: left-padded batches change GPT-2's positions, and the seed did the same.
        return [self.continuation(generate_ids(self.model, self.codec, prompt, params)[0]) for prompt in prompts]

    def continue_candidates(
        self, prompts: list[list[int]], params: GenerationParams, n: int
    ) -> list[list[Continuation]]:
        """`num_return_sequences=n`: transformers expands the prompt to n rows of one batch."""
        from shared.transformers_generate import generate_ids

        if params.seed is not None:
            self._torch.manual_seed(params.seed)
        return [
            [self.continuation(ids) for ids in generate_ids(self.model, self.codec, prompt, params, sequences=n)]
            for prompt in prompts
        ]


# The fast backends are imported on use: their engines are not needed by the transformers path.
def _onnxruntime_backend(model_dir: Path, options: BackendOptions | None = None) -> Backend:
    from services.inference_worker.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model_dir, options)


def _ctranslate2_backend(model_dir: Path, options: BackendOptions | None = None) -> Backend:
    from services.inference_worker.ctranslate2_backend import CTranslate2Backend

    return CTranslate2Backend(model_dir, options)


BACKENDS: dict[str, Callable[[Path, BackendOptions | None], Backend]] = {
    "transformers": TransformersBackend,
    "onnxruntime": _onnxruntime_backend,
    "ctranslate2": _ctranslate2_backend,
}
AUTO_ORDER = ("onnxruntime", "ctranslate2", "transformers")  # fastest first


def planned_lanes(kind: str, options: BackendOptions) -> int:
    """The lanes `kind` will run with `options` (the worker sizes its pool before the model loads;
    for "auto", the first choice's)."""
    kind = AUTO_ORDER[0] if kind == "auto" else kind
    if kind == "onnxruntime":
        from services.inference_worker.onnxruntime_backend import lanes_for

        return lanes_for(options)
    if kind == "ctranslate2":
        from services.inference_worker.ctranslate2_backend import lanes_for

        return lanes_for(options)
    return 1


def load_backend(kind: str, model_dir: Path, options: BackendOptions | None = None) -> Backend:
    """Load `kind` ("auto" = the fastest that loads) for the model in `model_dir`."""
    if kind == "auto":
        for candidate in AUTO_ORDER:
            try:
                return BACKENDS[candidate](model_dir, options)
            except Exception as exc:  # noqa: BLE001 - whatever stops a fast engine (conversion, CPU support): take the next
                log.warning(
                    "backend failed to load, trying the next", extra={"backend": candidate, "error": str(exc)[:500]}
                )
        raise RuntimeError(f"no inference backend could load {model_dir}")
    if kind not in BACKENDS:
        raise ValueError(f"unknown INFERENCE_BACKEND {kind!r}; choose one of {sorted(BACKENDS)} or auto")
    return BACKENDS[kind](model_dir, options)
