"""Does a version folder load and generate? Asked before activating it (workers ask again)."""

from __future__ import annotations

from pathlib import Path

from shared.model_store import InvalidVersion, check_files


def check_loads(folder: Path) -> None:
    """Load the tokenizer and the model from `folder` and generate two tokens; InvalidVersion if not."""
    check_files(folder)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from shared.schemas import GenerationParams
        from shared.tokenization import TextCodec, VocabularyError
        from shared.transformers_generate import generate_ids

        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model.eval()
        try:
            # A tokenizer larger than the model is fine while its extra tokens are special (never fed).
            codec = TextCodec.from_transformers(tokenizer, model.config.vocab_size)
        except VocabularyError as exc:
            raise InvalidVersion(str(exc)) from exc
        # Two greedy tokens through the serving path: the weights load and the graph runs.
        generate_ids(model, codec, codec.prompt(["привет"], "1"), GenerationParams(max_new_tokens=2), do_sample=False)
    except InvalidVersion:
        raise
    except Exception as exc:  # whatever transformers raises for a corrupt checkpoint
        raise InvalidVersion(f"{folder} does not load: {type(exc).__name__}: {str(exc)[:300]}") from exc
