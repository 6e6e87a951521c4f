"""The model's prompt format (DESIGN.md, "Prompt format of the model").

Turns go oldest to newest with alternating speakers, the reply is speaker 1:

    |0|{len}|{older}<eos>|1|{len}|{newer}<eos>...|1|{len}|

`{len}` is the length bucket of a turn in tokens. Dialogs travel newest first (the seed's order),
so the newest turn is always spoken by 1's opponent, 0, and the reply by 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

# A speaker marker as it appears in generated text: the model starts the next turn with it.
SPEAKER_MARKER = re.compile(r"\|[01]\|[123-]\|")


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


def build_prompt(
    dialog_newest_first: Sequence[str],
    count_tokens: Callable[[str], int],
    eos: str,
    reply_length: str = "2",
    reply: str | None = None,
) -> str:
    """Render a dialog (newest first) as the model's prompt.

    With `reply` it renders a training example: the reply text follows the last marker and ends
    with eos; its bucket is computed from the reply itself.
    """
    if not dialog_newest_first:
        raise ValueError("a dialog needs at least one turn")
    turns = list(reversed(dialog_newest_first))
    parts = [
        f"|{speaker}|{length_bucket(count_tokens(text))}|{text}{eos}"
        for speaker, text in zip(speakers(len(turns)), turns)
    ]
    if reply is None:
        parts.append(f"|1|{reply_length}|")
    else:
        parts.append(f"|1|{length_bucket(count_tokens(reply))}|{reply}{eos}")
    return "".join(parts)


def cut_reply(generated: str, eos: str) -> str:
    """The reply part of a continuation: up to eos or the next speaker marker, trimmed."""
    text = generated.split(eos, 1)[0]
    marker = SPEAKER_MARKER.search(text)
    if marker:
        text = text[: marker.start()]
    # Byte-level BPE can stop inside a multi-byte character; its bytes decode to U+FFFD.
    return text.replace("\ufffd", "").strip()
