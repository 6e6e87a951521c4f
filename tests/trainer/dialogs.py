"""Synthetic dialogs for training tests: repetitive enough that a tiny model learns them in seconds.

Each context has one fixed answer, in the words of the tiny tokenizer's corpus
(tests/model_factory.TINY_CORPUS), so the held-out loss of a model that learned must fall.
"""

from __future__ import annotations

import json
from pathlib import Path

# (context newest first, reply)
PAIRS: list[tuple[list[str], str]] = [
    (["привет анон как дела"], "нормально а у тебя что нового"),
    (["кот лучше собаки очевидно"], "ты что несёшь вообще"),
    (["скинь картинку с котом"], "где пруфы билли"),
    (["двач не тот уже"], "сажа тебе в тред"),
    (["бамп годному треду"], "двач не тот уже"),
    (["нормально а у тебя что нового", "привет анон как дела"], "пошёл работать завтра рано вставать"),
    (["где пруфы билли", "скинь картинку с котом"], "кот лучше собаки очевидно"),
    (["ты что несёшь вообще", "кот лучше собаки очевидно"], "бамп годному треду"),
]


def synthetic_dialogs(n: int) -> list[dict]:
    """`n` dialogs in the scraper's export format (newest first: the reply is dialogue[0])."""
    rows = []
    for i in range(n):
        context, reply = PAIRS[i % len(PAIRS)]
        rows.append({"id": i + 1, "dialogue": [reply, *context]})
    return rows


def write_dialogs_jsonl(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in synthetic_dialogs(n):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
