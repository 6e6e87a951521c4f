"""Does a version folder load and generate? Asked before activating it (workers ask again)."""

from __future__ import annotations

import logging
from pathlib import Path

from shared.model_store import InvalidVersion, check_files

log = logging.getLogger(__name__)


def check_loads(folder: Path) -> None:
    """Load the tokenizer and the model from `folder` and generate two tokens; InvalidVersion if not."""
    check_files(folder)
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        config = AutoConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if len(tokenizer) > config.vocab_size:
            raise InvalidVersion(
                f"the tokenizer has {len(tokenizer)} tokens but the model only {config.vocab_size}: ids would overflow"
            )
        if len(tokenizer) != config.vocab_size:
            log.warning(
                "len(tokenizer) != vocab_size: the fast backends cannot convert it (transformers still serves it)",
                extra={"tokens": len(tokenizer), "vocab_size": config.vocab_size},
            )
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model.eval()
        ids = torch.tensor([tokenizer.encode("|0|1|привет" + tokenizer.eos_token + "|1|1|", add_special_tokens=False)])
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=2,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        if out.shape[1] <= ids.shape[1]:
            raise InvalidVersion("the model generated nothing")
    except InvalidVersion:
        raise
    except Exception as exc:  # whatever transformers raises for a corrupt checkpoint
        raise InvalidVersion(f"{folder} does not load: {type(exc).__name__}: {str(exc)[:300]}") from exc
