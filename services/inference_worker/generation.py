"""From a dialog to a reply: prompt building, truncation, sampling, cutting and retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.prompt import build_prompt, cut_reply
from shared.schemas import GenerationParams

from services.inference_worker.backends import Backend

log = logging.getLogger(__name__)


class EmptyGeneration(Exception):
    """Every attempt gave an empty reply (the model said eos or a speaker marker at once)."""


@dataclass
class Reply:
    text: str
    new_tokens: int


class Generator:
    def __init__(self, backend: Backend, *, max_turn_tokens: int = 256, max_context_tokens: int = 768, attempts: int = 3):
        self.backend = backend
        self.max_turn_tokens = max_turn_tokens
        self.max_context_tokens = max_context_tokens
        self.attempts = attempts

    def fit_dialog(self, dialog: list[str], max_new_tokens: int) -> list[str]:
        """Cut over-long turns and drop the oldest turns until the prompt fits the context."""
        turns = []
        for text in dialog:
            # Callers validate text, but a lone surrogate must never crash the tokenizer.
            text = text.encode("utf-8", "replace").decode("utf-8")
            ids = self.backend.encode(text)
            if len(ids) > self.max_turn_tokens:
                # Keep the start of a turn: that is what the next poster answers.
                text = self.backend.decode(ids[: self.max_turn_tokens])
            turns.append(text)
        budget = self.max_context_tokens - max_new_tokens
        while len(turns) > 1 and len(self.prompt_ids(turns, "2")) > budget:
            turns.pop()  # newest first: the last one is the oldest
        return turns

    def prompt_ids(self, dialog: list[str], length: str) -> list[int]:
        prompt = build_prompt(dialog, self.backend.count_tokens, self.backend.eos_token, reply_length=length)
        return self.backend.encode(prompt)

    def reply(self, dialog: list[str], params: GenerationParams) -> Reply:
        """One non-empty reply to `dialog` (newest first); raises EmptyGeneration after all attempts."""
        return self.reply_many([dialog], params)[0]

    def reply_many(self, dialogs: list[list[str]], params: GenerationParams) -> list[Reply]:
        prompts = [self.prompt_ids(self.fit_dialog(d, params.max_new_tokens), params.length) for d in dialogs]
        replies: list[Reply | None] = [None] * len(dialogs)
        spent = [0] * len(dialogs)
        for attempt in range(self.attempts):
            todo = [i for i, r in enumerate(replies) if r is None]
            if not todo:
                break
            attempt_params = params
            if params.seed is not None and attempt:
                attempt_params = params.model_copy(update={"seed": params.seed + attempt})
            outputs = self.backend.continue_prompts([prompts[i] for i in todo], attempt_params)
            for i, out in zip(todo, outputs):
                spent[i] += len(out.token_ids)
                text = cut_reply(out.text, self.backend.eos_token)
                if text:
                    replies[i] = Reply(text, spent[i])
                else:
                    log.info("empty generation, sampling again", extra={"attempt": attempt + 1})
        if any(r is None for r in replies):
            raise EmptyGeneration(f"the model gave an empty reply {self.attempts} times")
        return replies  # type: ignore[return-value]
