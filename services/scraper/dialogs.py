"""Reply chains -> dialogs.

A dialog starts at a post (the reply) and follows each post's parent: the first of its reply links
that points to an earlier post of the same thread. It stops at a post with no such link, at a
post that is no dialog turn (empty, bump, sage) and at `max_turns`. Turns are stored newest
first, the seed's order: `["reply", "the post it answers", "older", ...]`; a dialog has two turns
at least. Links to other threads are kept on the post but not followed: whether that thread is
stored depends on crawl order, and a dialog must not change with it. Requiring the parent to be
older also makes a loop of links (possible in hostile data) impossible.

Every post is the reply of at most one dialog, so a chain of five posts gives dialogs of two,
three, four and five turns. Dialogs with the same turns (copy-pasta) are stored once, by hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PostNode:
    num: int
    text: str
    parents: tuple[int, ...]
    usable: bool


@dataclass(frozen=True)
class DialogRecord:
    turns: tuple[str, ...]  # newest first
    post_nums: tuple[int, ...]  # the post of each turn, newest first
    turns_hash: str


def turns_hash(turns: Iterable[str]) -> str:
    """sha256 of the turns as a JSON list: the identity of a dialog."""
    return hashlib.sha256(json.dumps(list(turns), ensure_ascii=False).encode("utf-8")).hexdigest()


def parent_of(post: PostNode, posts: Mapping[int, PostNode]) -> int | None:
    """The post `post` answers: its first reply link to an earlier post of the same thread."""
    for num in post.parents:
        if num < post.num and num in posts:
            return num
    return None


def build_dialog(leaf: PostNode, posts: Mapping[int, PostNode], max_turns: int, lowercase: bool) -> DialogRecord | None:
    """The dialog whose reply is `leaf`, or None when its chain is shorter than two turns."""
    if not leaf.usable:
        return None
    chain = [leaf]
    node = leaf
    while len(chain) < max_turns:
        parent_num = parent_of(node, posts)
        if parent_num is None:
            break
        parent = posts[parent_num]
        if not parent.usable:
            break
        chain.append(parent)
        node = parent
    if len(chain) < 2:
        return None
    turns = tuple(post.text.lower() if lowercase else post.text for post in chain)
    return DialogRecord(turns=turns, post_nums=tuple(post.num for post in chain), turns_hash=turns_hash(turns))


def build_dialogs(
    posts: Mapping[int, PostNode],
    leaves: Iterable[int] | None = None,
    *,
    max_turns: int = 6,
    lowercase: bool = True,
) -> list[DialogRecord]:
    """Dialogs of one thread whose replies are `leaves` (default: every post), duplicates removed."""
    if max_turns < 2:
        raise ValueError("a dialog has two turns at least")
    dialogs: dict[str, DialogRecord] = {}
    for num in sorted(posts if leaves is None else leaves):
        dialog = build_dialog(posts[num], posts, max_turns, lowercase)
        if dialog is not None and dialog.turns_hash not in dialogs:
            dialogs[dialog.turns_hash] = dialog
    return list(dialogs.values())


def count_links(posts: Mapping[int, PostNode]) -> tuple[int, int]:
    """(reply links, links that resolve to an earlier post of the same thread) over `posts`."""
    total = resolved = 0
    for post in posts.values():
        total += len(post.parents)
        resolved += sum(1 for num in post.parents if num < post.num and num in posts)
    return total, resolved
