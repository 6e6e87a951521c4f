"""From a dialog to a reply: turn cleaning, truncation, prompt building, sampling and retries.

Turns are cleaned (shared/tokenization.py: no speaker markers or special-token strings), lower-cased
when `lowercase` is on (every training example was: the scraper lower-cases by default, the seed
did too), cut to `max_turn_tokens`, and the oldest dropped until the prompt fits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from services.inference_worker.backends import Backend
from shared.schemas import GenerationParams

log = logging.getLogger(__name__)


class EmptyGeneration(Exception):
    """Every attempt gave an empty reply (the model said eos or a speaker marker at once)."""


@dataclass
class Reply:
    text: str  # the first non-empty candidate (the reranker chooses among `candidates`: reranker.py)
    new_tokens: int  # tokens generated for all candidates and attempts
    candidates: list[str] = field(default_factory=list)  # every candidate's text, "" for an empty one

    def __post_init__(self) -> None:
        if not self.candidates:
            self.candidates = [self.text]


class Generator:
    def __init__(
        self,
        backend: Backend,
        *,
        max_turn_tokens: int = 256,
        max_context_tokens: int = 768,
        attempts: int = 3,
        lowercase: bool = True,
    ):
        self.backend = backend
        self.codec = backend.codec
        self.lowercase = lowercase
        self.max_turn_tokens = max_turn_tokens
        self.max_context_tokens = max_context_tokens
        self.attempts = attempts

    def fit_dialog(self, dialog: list[str], max_new_tokens: int) -> list[str]:
        """Cut over-long turns and drop the oldest turns until the prompt fits the context."""
        turns = []
        for raw in dialog:
            # Callers validate text, but a lone surrogate must never crash the tokenizer.
            text = self.codec.clean(raw.encode("utf-8", "replace").decode("utf-8"))
            if self.lowercase:
                text = text.lower()
            ids = self.codec.encode(text)
            if len(ids) > self.max_turn_tokens:
                # Keep the start of a turn: that is what the next poster answers.
                text = self.codec.decode(ids[: self.max_turn_tokens]).replace("\ufffd", "")
            turns.append(text)
        budget = self.max_context_tokens - max_new_tokens
        while len(turns) > 1 and len(self.prompt_ids(turns, "2")) > budget:
            turns.pop()  # newest first: the last one is the oldest
        return turns

    def prompt_ids(self, dialog: list[str], length: str) -> list[int]:
        return self.codec.prompt(dialog, length)

    def reply(self, dialog: list[str], params: GenerationParams) -> Reply:
        """One non-empty reply to `dialog` (newest first); raises EmptyGeneration after all attempts."""
        return self.reply_many([dialog], params)[0]

    def reply_many(self, dialogs: list[list[str]], params: GenerationParams) -> list[Reply]:
        """One reply per dialog with `params.candidates` candidates each (one by default); a dialog
        whose candidates all came out empty is sampled again, up to `attempts` times."""
        n = params.candidates or 1
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
            outputs = self.backend.continue_candidates([prompts[i] for i in todo], attempt_params, n)
            for i, outs in zip(todo, outputs, strict=True):
                spent[i] += sum(len(out.token_ids) for out in outs)
                texts = [out.text for out in outs]  # cut at eos or the next speaker (TextCodec.reply_text)
                if any(texts):
                    replies[i] = Reply(next(t for t in texts if t), spent[i], candidates=texts)
                else:
                    log.info("empty generation, sampling again", extra={"attempt": attempt + 1})
        if any(r is None for r in replies):
            raise EmptyGeneration(f"the model gave an empty reply {self.attempts} times")
        return replies  # type: ignore[return-value]
