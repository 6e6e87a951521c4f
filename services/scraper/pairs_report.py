"""Training pairs on recorded 2ch JSON, by the current rules and by the rule they replaced:
`python -m services.scraper pairs [DATA_DIR]`.

A pair is a reply and the post it answers (the first two turns of a dialog; `dialogs.pairs`).
The rule replaced (until issue 20) took a post's first reply link that resolved, wherever it
stood, as its parent, with the whole post as the reply. The current rules (`cleaning.py`) take
only links that start the post or a line, split a post answering several people in turn into
one pair per person, and remove a stray `>` left by a quoted link. Both are computed on the same
cleaned posts, so the difference is the rules' alone. Two snapshots of one thread count once (the
bigger one), as in `bench`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.scraper.api_models import MalformedResponse
from services.scraper.bench import find_thread_files, thread_nodes
from services.scraper.dialogs import Pair, PostNode, build_dialogs, pairs


def legacy_nodes(nodes: Mapping[int, PostNode]) -> dict[int, PostNode]:
    """The same posts under the replaced rule: the first link that resolves answers, whole text."""
    return {num: replace(node, answers=None) for num, node in nodes.items()}


def compare(before: list[Pair], after: list[Pair]) -> dict[str, Any]:
    """How the pairs of one thread moved from `before` (one per post at most) to `after`."""
    old = {pair.post: pair for pair in before}
    new: dict[int, list[Pair]] = {}
    for pair in after:
        new.setdefault(pair.post, []).append(pair)
    figures = {"same": 0, "same_parent_new_text": 0, "changed_parent": 0, "removed": 0, "added": 0}
    changed = []
    for post, pair in old.items():
        now = new.get(post, [])
        kept = next((p for p in now if p.parent == pair.parent), None)
        if kept is None and now:
            figures["changed_parent"] += 1
            changed.append({"post": post, "parent_before": pair.parent, "parents_after": [p.parent for p in now]})
        elif kept is None:
            figures["removed"] += 1
            changed.append({"post": post, "parent_before": pair.parent, "parents_after": []})
        elif kept.text == pair.text:
            figures["same"] += 1
        else:
            figures["same_parent_new_text"] += 1
        figures["added"] += len(now) - (1 if now else 0)
    figures["added"] += sum(len(now) for post, now in new.items() if post not in old)
    return {**figures, "changes": changed}


def report(data_dir: Path, *, max_turns: int = 6, lowercase: bool = True, drop_quotes: bool = False) -> dict[str, Any]:
    """Pair and dialog counts by both rules over the recorded threads in `data_dir`."""
    files = find_thread_files(data_dir)
    if not files:
        raise FileNotFoundError(f"no full-thread JSON in {data_dir}")
    threads: dict[tuple[str, int], tuple[str, dict[int, PostNode]]] = {}
    for path, board, num in files:
        try:
            nodes = thread_nodes(path.read_bytes(), board, num, drop_quotes=drop_quotes)
        except MalformedResponse:
            continue
        if (board, num) not in threads or len(threads[board, num][1]) < len(nodes):
            threads[board, num] = (path.name, nodes)

    totals: dict[str, Any] = {
        "pairs_before": 0,
        "pairs_after": 0,
        "dialogs_before": 0,
        "dialogs_after": 0,
        "dialogs_shortened": 0,
        "split_posts": 0,
        "pairs_from_split_posts": 0,
        "same": 0,
        "same_parent_new_text": 0,
        "changed_parent": 0,
        "removed": 0,
        "added": 0,
    }
    length_counts: dict[str, Counter[int]] = {"before": Counter(), "after": Counter()}
    per_thread = []
    for (board, num), (name, nodes) in sorted(threads.items()):
        legacy = legacy_nodes(nodes)
        before, after = list(pairs(legacy)), list(pairs(nodes))
        moved = compare(before, after)
        dialogs_before = build_dialogs(legacy, max_turns=max_turns, lowercase=lowercase)
        dialogs_after = build_dialogs(nodes, max_turns=max_turns, lowercase=lowercase)
        # Length of each dialog by its first two posts: a chain is cut after a post answering several people.
        lengths_before = {d.post_nums[:2]: len(d.turns) for d in dialogs_before}
        lengths_after = {d.post_nums[:2]: len(d.turns) for d in dialogs_after}
        length_counts["before"].update(len(d.turns) for d in dialogs_before)
        length_counts["after"].update(len(d.turns) for d in dialogs_after)
        split = {num for num, node in nodes.items() if node.usable and len(node.replies()) > 1}
        figures = {
            "file": name,
            "board": board,
            "thread": num,
            "posts": len(nodes),
            "pairs_before": len(before),
            "pairs_after": len(after),
            "dialogs_before": len(dialogs_before),
            "dialogs_after": len(dialogs_after),
            "dialogs_shortened": sum(1 for key, length in lengths_after.items() if length < lengths_before.get(key, 0)),
            "split_posts": len(split),
            "pairs_from_split_posts": sum(1 for pair in after if pair.post in split),
            **moved,
        }
        per_thread.append(figures)
        for key in totals:
            totals[key] += figures[key]
    return {
        "data_dir": str(data_dir),
        "threads": len(per_thread),
        "posts": sum(f["posts"] for f in per_thread),
        "max_dialog_turns": max_turns,
        **totals,
        "dialog_lengths_before": dict(sorted(length_counts["before"].items())),
        "dialog_lengths_after": dict(sorted(length_counts["after"].items())),
        "per_thread": per_thread,
    }
