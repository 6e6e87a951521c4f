"""The dialog JSONL: the one file format of the dataset, written by the scraper's `export` and the
trainer's `export` and snapshots, read by `train --jsonl`.

One dialog per line, newest turn first (`dialogue[0]` is the reply, the rest its context):

    {"id": 17, "dialogue": ["ответ", "пост, на который он отвечает"], "toxicity": 0.93,
     "board": "b", "thread_num": 1234, "post_nums": [1240, 1236]}

`id` is the dialog's id in the `dialogs` table (a hand-made file may use any id); the seed's
dataset had `id` and `dialogue` only, and the other keys may be missing. A post that answers
several people in turn starts one dialog per person, with only its part for that person as the
reply: such lines share `post_nums[0]`, and their `dialogue[0]` is a piece of the post.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class DialogLine(BaseModel):
    """One line of the file."""

    model_config = ConfigDict(extra="ignore")

    id: int | str | None = Field(default=None, description="The dialog's id in the `dialogs` table.")
    dialogue: list[str] = Field(description="Turns, newest first: the reply, then its context.")
    toxicity: float | None = Field(default=None, description="Toxicity of the reply turn, when scored.")
    board: str | None = None
    thread_num: int | None = None
    post_nums: list[int] | None = Field(
        default=None,
        description="The post of each turn, newest first (the reply may be one part of its post).",
    )

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def write_jsonl(lines: Iterable[DialogLine], path: Path) -> int:
    """Write the dialogs to `path` (beside it first, then renamed: a reader never sees half a
    file); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    with partial.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(line.to_json() + "\n")
            count += 1
    partial.replace(path)
    return count


def read_jsonl(path: Path) -> Iterator[tuple[int, DialogLine | None]]:
    """(line number, the dialog) for every non-blank line; None for a line that is not a dialog."""
    with Path(path).open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                yield number, DialogLine.model_validate_json(text)
            except ValidationError:
                yield number, None
