"""The second fast backend: CTranslate2 with int8 weights (float32 for parity checks).

One `ctranslate2.Generator` holds one copy of the weights; its `inter_threads` replicas (our
"lanes") share them and each runs one batch at a time on `intra_threads` threads, so a worker
process serves several generations at once without a second copy of the model. The checkpoint is
converted on first use and cached (conversion.py). Tokenization uses the `tokenizers` library
alone, so neither torch nor transformers is loaded in a worker that serves this backend.

Sampling parameters mean what they mean in transformers' `generate` (the reference):
repetition penalty (CTRL-style, over the prompt and the reply so far), then temperature, top-k
(0 = off) and top-p over what is left, then a draw; stop at eos; `max_new_tokens` counts new
tokens only. One difference could not be removed: CTranslate2 4.8 has no per-call random seed
(its random generators are per thread, seeded once), so a job with `seed` is sampled here, in
numpy, from the logits CTranslate2 computes one step at a time: reproducible, with the same
semantics, but about as slow as the seed's way. Jobs without a seed take the fast path.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from services.inference_worker.backends import BackendOptions, Continuation, ConvertedBackend
from services.inference_worker.sampling import sample_next
from shared.schemas import GenerationParams

log = logging.getLogger(__name__)


def default_lanes(cores: int) -> int:
    """Generations at once: one per core (measured best on 2 cores, docs/inference.md)."""
    return max(1, cores)


def lanes_for(options: BackendOptions) -> int:
    """INFERENCE_LANES, else the default for the process's cores (the worker's start-up needs it
    before the model loads, to size its pool)."""
    return options.lanes or default_lanes(options.cores)


WIDE_MODEL = 2048  # hidden size from which one generation's GEMMs are big enough for threads to pay


def default_threads_per_lane(cores: int, lanes: int, width: int = 0) -> int:
    """Threads per generation (measured on 2 cores, docs/inference.md).

    Up to 1024 wide (355M) the lanes split the cores: a second thread on one generation gains
    nothing here (its small attention GEMMs slow down more than the int8 GEMMs speed up: 0.95 s
    per reply on 1 thread, 1.07-1.10 s on 2) and lanes that share cores slow each other down.
    From 2048 wide (1.3B) every lane uses all the cores: 2.5 s per reply on 2 threads against
    3.4 s on 1, and 8 at once run as fast either way.
    """
    if width >= WIDE_MODEL:
        return max(1, cores)
    return max(1, cores // max(1, lanes))


def model_width(model_dir: Path) -> int:
    """The checkpoint's hidden size (0 when its config does not say)."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(config.get("n_embd") or config.get("hidden_size") or 0)


class CTranslate2Backend(ConvertedBackend):
    name = "ctranslate2"
    engine = "ctranslate2"

    def __init__(self, model_dir: Path, options: BackendOptions | None = None):
        super().__init__(model_dir, options)
        import ctranslate2

        opts = self.options
        self.lanes = lanes_for(opts)
        self.threads_per_lane = opts.threads_per_lane or default_threads_per_lane(
            opts.cores, self.lanes, model_width(model_dir)
        )
        self.generator = ctranslate2.Generator(
            str(self.converted_dir),
            device="cpu",
            compute_type=opts.quantization,
            inter_threads=self.lanes,
            intra_threads=self.threads_per_lane,
        )
        self.vocabulary: list[str] = json.loads((self.converted_dir / "vocabulary.json").read_text())
        self._suppressed = [[self.vocabulary[i]] for i in self.codec.banned_ids]  # CTranslate2 takes token strings
        self.loaded()

    def _tokens(self, ids: list[int]) -> list[str]:
        # CTranslate2 takes token strings; GPT-2's byte-level tokens map one to one to ids.
        return [self.vocabulary[i] for i in ids]

    def continue_candidates(
        self, prompts: list[list[int]], params: GenerationParams, n: int
    ) -> list[list[Continuation]]:
        """`n` samples of each prompt: each prompt repeated `n` times in one batch. CTranslate2 4.8's
        `num_hypotheses` cannot give them from one prefill: with `beam_size=1` it refuses more than
        one ("The number of hypotheses cannot be greater than beam_size * patience"), and a beam of
        n returns the n best of one beam search (sampling inside it), not n independent replies."""
        return super().continue_candidates(prompts, params, n)

    def continue_prompts(self, prompts: list[list[int]], params: GenerationParams) -> list[Continuation]:
        """One batch on one lane (the caller runs at most `lanes` of these at once)."""
        if params.seed is not None:
            return [self._sample_reproducibly(prompt, params) for prompt in prompts]
        lengths = {len(p) for p in prompts}
        if len(lengths) > 1 and min(lengths) < 2:
            # CTranslate2 4.8 returns prompt tokens as output for a mixed batch whose shortest
            # prompt has one token; our prompts never do, but keep the result right: one by one.
            return [self.continue_prompts([p], params)[0] for p in prompts]
        results = self.generator.generate_batch(
            [self._tokens(p) for p in prompts],
            max_length=params.max_new_tokens,  # counts new tokens only with include_prompt_in_result=False
            include_prompt_in_result=False,
            sampling_topk=params.top_k,  # 0 = the whole vocabulary, as top_k=None in transformers
            sampling_topp=params.top_p,
            sampling_temperature=params.temperature,
            repetition_penalty=params.repetition_penalty,
            end_token=[self.eos_token_id],  # the tokenizer's eos (config.json's is an ordinary token)
            return_end_token=False,
            suppress_sequences=self._suppressed or None,
        )
        return [self.continuation(list(result.sequences_ids[0])) for result in results]

    def next_token_logits(self, prompt: list[int]) -> np.ndarray:
        """Raw logits of the token after `prompt` (float32, vocabulary-sized)."""
        result = self.generator.generate_batch(
            [self._tokens(prompt)],
            max_length=1,
            include_prompt_in_result=False,
            return_logits_vocab=True,
            sampling_topk=1,
            end_token=[],
        )[0]
        return np.array(result.logits[0][0], dtype=np.float32)

    def _sample_reproducibly(self, prompt: list[int], params: GenerationParams) -> Continuation:
        rng = np.random.default_rng(params.seed)
        ids = list(prompt)
        new: list[int] = []
        for _ in range(params.max_new_tokens):
            token = sample_next(self.next_token_logits(ids), ids, params, rng, self.banned)
            if token == self.eos_token_id:
                break
            ids.append(token)
            new.append(token)
        return self.continuation(new)
