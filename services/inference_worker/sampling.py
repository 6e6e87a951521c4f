"""One draw from next-token logits with the semantics of transformers' `generate` (the reference).

Order as in transformers: banned tokens out (special tokens other than eos; as `suppress_tokens`),
repetition penalty (CTRL-style, over the prompt and the reply so far),
then temperature, top-k (ties with the k-th score kept; 0 = off), then top-p over what is left
(the likeliest token always kept), then a draw. Used by the backends that sample themselves
(onnxruntime always, ctranslate2 for seeded jobs). With top-k on, only the k candidates are
sorted, which keeps a step cheap on a 50,000-token vocabulary.
"""

from __future__ import annotations

import numpy as np

from shared.schemas import GenerationParams


def penalise(scores: np.ndarray, seen: np.ndarray, penalty: float) -> None:
    """CTRL repetition penalty in place on the scores of the token ids in `seen` (unique)."""
    if penalty != 1.0 and seen.size:
        picked = scores[seen]
        scores[seen] = np.where(picked < 0, picked * penalty, picked / penalty)


def ban(scores: np.ndarray, banned: np.ndarray | None) -> None:
    """In place: the banned token ids can never be drawn."""
    if banned is not None and banned.size:
        scores[banned] = -np.inf


def sample_next(
    logits: np.ndarray, previous, params: GenerationParams, rng: np.random.Generator, banned: np.ndarray | None = None
) -> int:
    """The next token after `previous` (token ids so far, prompt included)."""
    scores = np.array(logits, dtype=np.float32)  # a copy: transformers works on float32 logits too
    ban(scores, banned)
    penalise(scores, np.unique(np.asarray(previous, dtype=np.int64)), params.repetition_penalty)
    return draw(scores, params, rng)


def top_k_candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the scores at least as high as the k-th highest (ties kept), ascending.

    A full partition of 50,000 scores costs about 0.4 ms, a lot per token and sequence; the maxima
    of blocks of 128 cost a tenth of that, and the k-th highest block maximum is a lower bound of the
    k-th highest score (k blocks hold a score at least that high), which leaves a few hundred
    candidates to partition exactly.
    """
    if scores.size > 4096:
        block = 128
        padded = np.full(-(-scores.size // block) * block, -np.inf, dtype=scores.dtype)
        padded[: scores.size] = scores
        maxima = padded.reshape(-1, block).max(axis=1)
        if k <= maxima.size:
            bound = np.partition(maxima, -k)[-k]
            candidates = np.flatnonzero(scores >= bound)
            kth = np.partition(scores[candidates], -k)[-k]
            return candidates[scores[candidates] >= kth]
    kth = np.partition(scores, -k)[-k]
    return np.flatnonzero(scores >= kth)


def draw(scores: np.ndarray, params: GenerationParams, rng: np.random.Generator) -> int:
    """Temperature, top-k, top-p and a draw on penalised scores (one row of logits)."""
    # temperature keeps the order: select first
    top_k = 0 < params.top_k < scores.size
    candidates = top_k_candidates(scores, params.top_k) if top_k else np.arange(scores.size)
    kept = scores[candidates].astype(np.float64) / params.temperature
    if params.top_p < 1.0:
        order = np.argsort(kept, kind="stable")  # ascending, as transformers' TopPLogitsWarper
        probs = np.exp(kept[order] - kept[order[-1]])
        probs /= probs.sum()
        remove = np.cumsum(probs) <= 1 - params.top_p
        remove[-1] = False  # always keep the likeliest token
        keep = np.sort(order[~remove])
        candidates, kept = candidates[keep], kept[keep]
    probs = np.exp(kept - kept.max())
    probs /= probs.sum()
    return int(candidates[rng.choice(kept.size, p=probs)])
