"""How dialog text becomes the served model's token ids, and generated ids become reply text.

Used by everything that feeds the model (the worker's backends, the trainer's examples, the demo
model's build), so that they agree on three rules:

- User text is text. Special-token strings in it (`<|endoftext|>`, `</s>`, `<pad>`, ...) and
  speaker markers (`|1|2|`) are removed (`shared.prompt.clean_turn`), and what is left is encoded
  with special-token matching off, so no text ever becomes a special id or a turn boundary.
- No id fed to the model is >= its vocabulary size. The published checkpoint's tokenizer is one
  entry larger than the model (`<|endoftext|>` is added by transformers as id 50257, past the
  50257 rows): that is fine as long as such tokens are special (never matched in text, never
  sampled, since logits have `vocab_size` columns) and eos is inside the model. A tokenizer is
  refused only when that cannot hold, naming the token.
- Replies are text. Generation never samples a special token other than eos (`banned_ids`: pad,
  bos, unk, mask, and vocabulary entries named like them), stops at the tokenizer's eos (not
  config.json's `eos_token_id`, an ordinary token in the published checkpoint), and the decoded
  reply carries no special-token text and no speaker marker.

Only the `tokenizers` library is needed (the worker loads no transformers); a transformers
tokenizer is passed as its `backend_tokenizer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.prompt import SPECIAL_TOKEN_TEXTS, clean_turn, cut_reply, prompt_ids


class VocabularyError(ValueError):
    """The tokenizer cannot feed this model without ids past its rows; the message says which token."""


@dataclass(frozen=True)
class TextCodec:
    tokenizer: Any  # a tokenizers.Tokenizer of its own, with special-token matching off
    eos_token: str
    eos_id: int
    vocab_size: int  # rows of the model's embedding (config.json vocab_size)
    special_texts: tuple[str, ...]  # strings removed from turns and replies
    banned_ids: tuple[int, ...]  # never sampled

    @classmethod
    def build(cls, tokenizer: Any, eos_token: str, vocab_size: int) -> TextCodec:
        """Check the invariant for `tokenizer` (a tokenizers.Tokenizer) and a model of `vocab_size`
        rows; VocabularyError when it cannot hold."""
        from tokenizers import Tokenizer

        own = Tokenizer.from_str(tokenizer.to_str())  # a copy: the caller's tokenizer keeps its behaviour
        own.encode_special_tokens = True
        base = own.get_vocab(with_added_tokens=False)
        outside = sorted((i, t) for t, i in base.items() if i >= vocab_size)
        if outside:
            i, token = outside[0]
            raise VocabularyError(
                f"the tokenizer's vocabulary has {len(outside)} entries past the model's {vocab_size} rows "
                f"(first: {token!r} = id {i}); text would encode to ids the model does not have. Use the "
                f"tokenizer the model was trained with, or resize the model's embeddings to it"
            )
        added = own.get_added_tokens_decoder()
        for i, added_token in sorted(added.items()):
            if i >= vocab_size and not added_token.special:
                raise VocabularyError(
                    f"the added token {added_token.content!r} (id {i}) is past the model's {vocab_size} rows and is "
                    f"matched in plain text; mark it special, remove it, or resize the model's embeddings"
                )
        eos_id = own.token_to_id(eos_token) if eos_token else None
        if eos_id is None:
            raise VocabularyError(f"the tokenizer has no eos token ({eos_token!r}); the prompt format needs one")
        if eos_id >= vocab_size:
            raise VocabularyError(
                f"the eos token {eos_token!r} is id {eos_id}, past the model's {vocab_size} rows; the prompt format "
                f"feeds it after every turn"
            )
        specials = {t.content for t in added.values() if t.special} | set(SPECIAL_TOKEN_TEXTS)
        banned = {i for i, t in added.items() if t.special and i < vocab_size}
        banned |= {base[t] for t in SPECIAL_TOKEN_TEXTS if t in base}
        banned.discard(eos_id)
        return cls(own, eos_token, eos_id, vocab_size, tuple(sorted(specials)), tuple(sorted(banned)))

    @classmethod
    def from_transformers(cls, tokenizer: Any, vocab_size: int) -> TextCodec:
        """From a transformers (fast) tokenizer."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise VocabularyError("a fast (tokenizers-backed) tokenizer is needed")
        return cls.build(backend, tokenizer.eos_token, vocab_size)

    def clean(self, text: str) -> str:
        """A turn as plain text (markers and this tokenizer's special-token strings removed)."""
        return clean_turn(text, self.special_texts)

    def encode(self, text: str) -> list[int]:
        """Plain text to ids (special-token strings stay text)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def prompt(self, dialog_newest_first: Sequence[str], length: str = "2") -> list[int]:
        """The ids of the prompt for a reply to `dialog_newest_first`."""
        return prompt_ids([self.clean(t) for t in dialog_newest_first], self.encode, self.eos_id, length)[0]

    def example(self, context_newest_first: Sequence[str], reply: str) -> tuple[list[int], int]:
        """A training example's ids and the index where the reply starts."""
        return prompt_ids(
            [self.clean(t) for t in context_newest_first], self.encode, self.eos_id, reply=self.clean(reply)
        )

    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text, special tokens skipped (for cutting turns; replies go through `reply_text`)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def reply_text(self, new_ids: Sequence[int]) -> str:
        """Generated ids to the reply: up to eos or the next speaker marker, no special-token text."""
        ids = list(new_ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.clean(cut_reply(self.decode(ids)))
