"""One reply sampled with transformers' `generate`, the reference way.

The worker's transformers backend serves with it (the fast backends are tested against it), the
trainer samples its report replies and checks a version with it, the demo model's build samples
with it. The rules of shared/tokenization.py hold here too: the prompt is ids from
`TextCodec.prompt`, special tokens other than eos are suppressed, generation stops at the
tokenizer's eos (config.json's `eos_token_id` may be an ordinary token, as in the published model).
"""

from __future__ import annotations

from typing import Any

from shared.schemas import GenerationParams
from shared.tokenization import TextCodec


def generate_ids(
    model: Any,
    codec: TextCodec,
    prompt: list[int],
    params: GenerationParams,
    *,
    do_sample: bool = True,
    sequences: int = 1,
) -> list[list[int]]:
    """`sequences` continuations of `prompt` (`num_return_sequences`), each its new token ids (eos
    and what follows cut off). Seed torch first for a reproducible draw."""
    import torch

    input_ids = torch.tensor([prompt], dtype=torch.long, device=model.device)
    with torch.inference_mode():
        output = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=do_sample,
            max_new_tokens=params.max_new_tokens,
            temperature=params.temperature if do_sample else None,
            top_k=(params.top_k or None) if do_sample else None,
            top_p=params.top_p if do_sample else None,
            repetition_penalty=params.repetition_penalty,
            suppress_tokens=list(codec.banned_ids) or None,
            eos_token_id=codec.eos_id,
            pad_token_id=codec.eos_id,
            num_return_sequences=sequences,
        )
    replies = []
    for row in output[:, input_ids.shape[1] :].tolist():
        replies.append(row[: row.index(codec.eos_id)] if codec.eos_id in row else row)
    return replies


def sample_reply(model: Any, codec: TextCodec, dialog_newest_first: list[str], params: GenerationParams) -> str:
    """A reply to a dialog (newest first) as text."""
    return codec.reply_text(generate_ids(model, codec, codec.prompt(dialog_newest_first, params.length), params)[0])
