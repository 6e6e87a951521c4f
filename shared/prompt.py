"""The model's prompt format (docs/architecture.md, "Prompt format of the model").

Turns go oldest to newest with alternating speakers, the reply is speaker 1:

    |0|{len}|{older}<eos>|1|{len}|{newer}<eos>...|1|{len}|

`{len}` is the length bucket of a turn in tokens. Dialogs travel newest first (the seed's order),
so the newest turn is always spoken by 1's opponent, 0, and the reply by 1.

`<eos>` is a token, not text: `prompt_ids` puts the tokenizer's eos id between turns and encodes
each turn as plain text, so that nothing a user writes can become a special token or a turn
boundary (`build_prompt` renders the same prompt as a string, for reading and tests). Turn text
goes through `clean_turn` first: speaker markers and special-token strings in it are removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

# A speaker marker as it appears in generated text: the model starts the next turn with it.
SPEAKER_MARKER = re.compile(r"\|[01]\|[123-]\|")
# Special-token strings of the GPT-2 family (the served tokenizer declares its own on top of these).
SPECIAL_TOKEN_TEXTS = ("<|endoftext|>", "<s>", "</s>", "<pad>", "<unk>", "<mask>")


def length_bucket(n_tokens: int) -> str:
    """Length bucket of a turn of `n_tokens` tokens: <=15 -> 1, <=50 -> 2, <=256 -> 3, else -."""
    if n_tokens <= 15:
        return "1"
    if n_tokens <= 50:
        return "2"
    if n_tokens <= 256:
        return "3"
    return "-"


def speakers(n_turns: int) -> list[int]:
    """Speaker of each turn, oldest first, so that the reply (not in the list) is speaker 1."""
    return [(n_turns - 1 - i) % 2 for i in range(n_turns)]


def clean_turn(text: str, special_texts: Iterable[str] = SPECIAL_TOKEN_TEXTS) -> str:
    """A turn as plain text: speaker markers and special-token strings removed, spaces tidied.

    Text is user input (a chat message, a 2ch post): a `|1|2|` in it would read to the model as a
    new turn, and an `</s>` as its end.
    """
    for special in sorted(set(special_texts), key=len, reverse=True):
        if special:
            text = text.replace(special, " ")
    previous = None
    while previous != text:  # removing one marker can join the pieces of another
        previous, text = text, SPEAKER_MARKER.sub(" ", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _segments(dialog_newest_first: Sequence[str], count_tokens: Callable[[str], int]) -> list[str]:
    if not dialog_newest_first:
        raise ValueError("a dialog needs at least one turn")
    turns = list(reversed(dialog_newest_first))
    return [
        f"|{speaker}|{length_bucket(count_tokens(text))}|{text}"
        for speaker, text in zip(speakers(len(turns)), turns, strict=True)
    ]


def _reply_marker(reply: str | None, reply_length: str, count_tokens: Callable[[str], int]) -> str:
    return f"|1|{length_bucket(count_tokens(reply)) if reply is not None else reply_length}|"


def build_prompt(
    dialog_newest_first: Sequence[str],
    count_tokens: Callable[[str], int],
    eos: str,
    reply_length: str = "2",
    reply: str | None = None,
) -> str:
    """Render a dialog (newest first) as the model's prompt text.

    With `reply` it renders a training example: the reply text follows the last marker and ends
    with eos; its bucket is computed from the reply itself.
    """
    text = "".join(segment + eos for segment in _segments(dialog_newest_first, count_tokens))
    text += _reply_marker(reply, reply_length, count_tokens)
    return text if reply is None else text + reply + eos


def prompt_ids(
    dialog_newest_first: Sequence[str],
    encode: Callable[[str], list[int]],
    eos_id: int,
    reply_length: str = "2",
    reply: str | None = None,
) -> tuple[list[int], int]:
    """The prompt as token ids, and the index where the reply starts (the length without it).

    `encode` must turn text into ids as plain text (special-token strings not matched); eos is
    inserted as `eos_id`. Each turn is encoded on its own with its marker, as it would be in the
    whole string (a special token ends a piece of text for the tokenizer too). The reply's marker
    is encoded apart from the reply, as at inference time, where the prompt ends with it.
    """

    def count(text: str) -> int:  # the bucket counts a turn's own tokens
        return len(encode(text))

    ids: list[int] = []
    for segment in _segments(dialog_newest_first, count):
        ids += [*encode(segment), eos_id]
    ids += encode(_reply_marker(reply, reply_length, count))
    start = len(ids)
    if reply is not None:
        ids += [*encode(reply), eos_id]
    return ids, start


def cut_reply(generated: str, eos: str | None = None) -> str:
    """The reply part of a continuation: up to eos (when its text is there) or the next speaker
    marker, trimmed."""
    text = generated.split(eos, 1)[0] if eos else generated
    marker = SPEAKER_MARKER.search(text)
    if marker:
        text = text[: marker.start()]
    # Byte-level BPE can stop inside a multi-byte character; its bytes decode to U+FFFD.
    return text.replace("\ufffd", "").strip()
