"""Figures measured on recorded 2ch JSON: `python -m services.scraper bench [DATA_DIR]`.

Takes every full thread (`/{board}/res/{num}.json` shape) in the folder and runs the scraper's
own pipeline on it, without network or database: JSON decoding, validation, cleaning, dialog
building. Reports posts parsed per second, dialogs built, their length distribution and the share
of reply links that resolved to a parent. Two snapshots of one thread count once in the totals
(the bigger one).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from services.scraper.api_models import MalformedResponse, parse_thread
from services.scraper.cleaning import clean_comment
from services.scraper.dialogs import PostNode, build_dialogs, count_links


def find_thread_files(data_dir: Path) -> list[tuple[Path, str, int]]:
    """(file, board, thread number) of every full-thread JSON in `data_dir`."""
    found = []
    for path in sorted(Path(data_dir).glob("*.json")):
        try:
            data = json.loads(path.read_bytes())
        except ValueError:
            continue
        if not isinstance(data, dict) or "current_thread" not in data:
            continue
        threads = data.get("threads")
        if not isinstance(threads, list) or len(threads) != 1 or not isinstance(threads[0], dict):
            continue
        posts = threads[0].get("posts")
        if not posts or not isinstance(posts, list):
            continue
        try:
            num = int(posts[0]["num"])
        except (KeyError, TypeError, ValueError):
            continue
        found.append((path, str(data.get("Board") or data.get("board") or "unknown"), num))
    return found


def thread_nodes(raw: bytes, board: str, num: int, *, drop_quotes: bool = False) -> dict[int, PostNode]:
    """The posts of one recorded thread, cleaned, as the dialog builder sees them."""
    thread = parse_thread(json.loads(raw), board, num)
    nodes = {}
    for post in thread.posts:
        clean = clean_comment(post.comment, drop_quotes=drop_quotes)
        nodes[post.num] = PostNode(post.num, clean.text, clean.parents, clean.usable, clean.answers)
    return nodes


def _pipeline(raw: bytes, board: str, num: int, *, max_turns: int, lowercase: bool, drop_quotes: bool):
    nodes = thread_nodes(raw, board, num, drop_quotes=drop_quotes)
    return nodes, build_dialogs(nodes, max_turns=max_turns, lowercase=lowercase)


def measure(
    data_dir: Path, *, rounds: int = 5, max_turns: int = 6, lowercase: bool = True, drop_quotes: bool = False
) -> dict:
    """Run the pipeline `rounds` times over the recorded threads; return the figures."""
    files = find_thread_files(data_dir)
    if not files:
        raise FileNotFoundError(f"no full-thread JSON in {data_dir}")
    raws = [(path, board, num, path.read_bytes()) for path, board, num in files]
    options: dict[str, Any] = dict(max_turns=max_turns, lowercase=lowercase, drop_quotes=drop_quotes)

    per_file: list[dict[str, Any]] = []
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for path, board, num, raw in raws:
        try:
            nodes, dialogs = _pipeline(raw, board, num, **options)
        except MalformedResponse as exc:
            per_file.append({"file": path.name, "error": str(exc)})
            continue
        links, resolved = count_links(nodes)
        turn_counts = Counter(len(d.turns) for d in dialogs)
        figures: dict[str, Any] = {
            "file": path.name,
            "board": board,
            "thread": num,
            "posts": len(nodes),
            "usable_posts": sum(1 for n in nodes.values() if n.usable),
            "reply_links": links,
            "resolved_links": resolved,
            "dialogs": len(dialogs),
            "lengths": dict(sorted(turn_counts.items())),
        }
        per_file.append(figures)
        key = (board, num)
        if key not in results or results[key]["posts"] < figures["posts"]:
            results[key] = figures

    posts_per_round = sum(f.get("posts", 0) for f in per_file)
    started = time.perf_counter()
    for _ in range(rounds):
        for _path, board, num, raw in raws:
            with contextlib.suppress(MalformedResponse):
                _pipeline(raw, board, num, **options)
    elapsed = time.perf_counter() - started

    distinct = list(results.values())
    lengths: Counter[int] = Counter()
    for figures in distinct:
        lengths.update(figures["lengths"])
    dialogs = sum(f["dialogs"] for f in distinct)
    links = sum(f["reply_links"] for f in distinct)
    resolved = sum(f["resolved_links"] for f in distinct)
    return {
        "data_dir": str(data_dir),
        "files": len(per_file),
        "threads": len(distinct),
        "rounds": rounds,
        "posts_per_second": round(posts_per_round * rounds / elapsed, 1),
        "max_dialog_turns": max_turns,
        "posts": sum(f["posts"] for f in distinct),
        "usable_posts": sum(f["usable_posts"] for f in distinct),
        "dialogs": dialogs,
        "dialog_lengths": dict(sorted(lengths.items())),
        "mean_dialog_length": round(sum(k * v for k, v in lengths.items()) / dialogs, 3) if dialogs else None,
        "reply_links": links,
        "reply_links_resolved": resolved,
        "reply_links_resolved_share": round(resolved / links, 4) if links else None,
        "per_file": per_file,
    }
