"""Reply chains -> dialogs.

A post answers someone through the reply links that start it or start one of its lines (links in
a sentence or a numbered list are mentions: `cleaning.py`). A post that answers several people in
turn (`>>1` + its answer, `>>2` + its answer, each link starting a line) has one answer per person;
any other post has at most one answer, its whole text. Each answer's parent is the first of its
links that points to an earlier post of the same thread.

A dialog starts at an answer (the reply) and follows the parent, the parent's parent and so on.
A post seen as context gives its whole text; the chain stops after a post that answers several
people (whose thread would it follow?), at a post with no parent, at a post that is no dialog turn
(empty, bump, sage) and at `max_turns`. Turns are stored newest first, the seed's order:
`["reply", "the post it answers", "older", ...]`; a dialog has two turns at least. Links to other
threads are kept on the post but not followed: whether that thread is stored depends on crawl
order, and a dialog must not change with it. Requiring the parent to be older also makes a loop
of links (possible in hostile data) impossible.

Every answer is the reply of at most one dialog, so a chain of five posts gives dialogs of two,
three, four and five turns. Dialogs with the same turns (copy-pasta) are stored once, by hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from services.scraper.cleaning import Answer


@dataclass(frozen=True)
class PostNode:
    num: int
    text: str
    parents: tuple[int, ...]  # every reply link, in order (what link counts are made of)
    usable: bool
    # Whom the post answers (`cleaning.Answer`). None for a post stored before answers were kept:
    # its first link answers, with the whole text (the rule until then).
    answers: tuple[Answer, ...] | None = None

    def replies(self) -> tuple[Answer, ...]:
        """The post's answers, whoever stored it."""
        if self.answers is None:
            return (Answer(self.parents, self.text),) if self.parents else ()
        return self.answers


@dataclass(frozen=True)
class DialogRecord:
    turns: tuple[str, ...]  # newest first
    post_nums: tuple[int, ...]  # the post of each turn, newest first
    turns_hash: str


@dataclass(frozen=True)
class Pair:
    """A reply and the post it answers: the first two turns of a dialog."""

    post: int
    part: int  # which answer of the post (0 unless it answers several people)
    parent: int
    text: str


def turns_hash(turns: Iterable[str]) -> str:
    """sha256 of the turns as a JSON list: the identity of a dialog."""
    return hashlib.sha256(json.dumps(list(turns), ensure_ascii=False).encode("utf-8")).hexdigest()


def parent_in(answer: Answer, num: int, posts: Mapping[int, PostNode]) -> int | None:
    """The post `answer` (of post `num`) answers: its first link to an earlier post of the thread."""
    for target in answer.to:
        if target < num and target in posts:
            return target
    return None


def parent_of(post: PostNode, posts: Mapping[int, PostNode]) -> int | None:
    """The post `post` continues, as context: the parent of its only answer (None when it answers
    no one, or several people)."""
    replies = post.replies()
    return parent_in(replies[0], post.num, posts) if len(replies) == 1 else None


def pairs(posts: Mapping[int, PostNode], leaves: Iterable[int] | None = None) -> Iterator[Pair]:
    """Every usable answer of `leaves` (default: every post) whose parent is a usable post."""
    for num in sorted(posts if leaves is None else leaves):
        post = posts[num]
        if not post.usable:
            continue
        for part, answer in enumerate(post.replies()):
            parent = parent_in(answer, num, posts)
            if parent is not None and posts[parent].usable:
                yield Pair(num, part, parent, answer.text)


def build_dialog(pair: Pair, posts: Mapping[int, PostNode], max_turns: int, lowercase: bool) -> DialogRecord:
    """The dialog whose reply is `pair`'s answer."""
    chain = [posts[pair.parent]]
    while len(chain) + 1 < max_turns:
        parent_num = parent_of(chain[-1], posts)
        if parent_num is None or not posts[parent_num].usable:
            break
        chain.append(posts[parent_num])
    turns = (pair.text, *(post.text for post in chain))
    if lowercase:
        turns = tuple(turn.lower() for turn in turns)
    return DialogRecord(turns=turns, post_nums=(pair.post, *(post.num for post in chain)), turns_hash=turns_hash(turns))


def build_dialogs(
    posts: Mapping[int, PostNode],
    leaves: Iterable[int] | None = None,
    *,
    max_turns: int = 6,
    lowercase: bool = True,
) -> list[DialogRecord]:
    """Dialogs of one thread whose replies are answers of `leaves` (default: every post),
    duplicates removed."""
    if max_turns < 2:
        raise ValueError("a dialog has two turns at least")
    dialogs: dict[str, DialogRecord] = {}
    for pair in pairs(posts, leaves):
        dialog = build_dialog(pair, posts, max_turns, lowercase)
        if dialog.turns_hash not in dialogs:
            dialogs[dialog.turns_hash] = dialog
    return list(dialogs.values())


def count_links(posts: Mapping[int, PostNode]) -> tuple[int, int]:
    """(reply links, links that resolve to an earlier post of the same thread) over `posts`."""
    total = resolved = 0
    for post in posts.values():
        total += len(post.parents)
        resolved += sum(1 for num in post.parents if num < post.num and num in posts)
    return total, resolved
