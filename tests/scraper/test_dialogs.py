"""Reply chains -> dialogs, on written posts (no network, no database)."""

from __future__ import annotations

import json

import pytest

from services.scraper.api_models import parse_thread
from services.scraper.cleaning import clean_comment
from services.scraper.dialogs import PostNode, build_dialogs, count_links, turns_hash
from tests.scraper.fixtures import EDGE_DIALOGS, EDGE_THREAD, edge_case_thread


def nodes(*posts: tuple[int, str, tuple[int, ...]], unusable: tuple[int, ...] = ()) -> dict[int, PostNode]:
    return {num: PostNode(num, text, parents, num not in unusable) for num, text, parents in posts}


def test_chain_newest_first_every_post_a_reply():
    posts = nodes((1, "A", ()), (2, "B", (1,)), (3, "C", (2,)), (4, "D", (3,)))
    dialogs = build_dialogs(posts, max_turns=6, lowercase=True)
    assert [d.post_nums for d in dialogs] == [(2, 1), (3, 2, 1), (4, 3, 2, 1)]
    assert dialogs[-1].turns == ("d", "c", "b", "a")
    assert dialogs[0].turns_hash == turns_hash(["b", "a"])


def test_max_turns_and_lowercase_setting():
    posts = nodes(*[(n, f"Пост {n}", (n - 1,) if n > 1 else ()) for n in range(1, 11)])
    dialogs = build_dialogs(posts, max_turns=3, lowercase=False)
    assert max(len(d.turns) for d in dialogs) == 3
    assert dialogs[-1].turns == ("Пост 10", "Пост 9", "Пост 8")
    with pytest.raises(ValueError):
        build_dialogs(posts, max_turns=1)


def test_unusable_posts_end_chains_and_are_never_replies():
    posts = nodes((1, "A", ()), (2, "", (1,)), (3, "C", (2,)), (4, "D", (3,)), unusable=(2,))
    assert [d.post_nums for d in build_dialogs(posts)] == [(4, 3)]


def test_deleted_later_and_cross_thread_parents():
    # 2 answers a deleted post then 1; 3 answers a post of another thread; 4 answers a later post.
    posts = nodes((1, "A", ()), (2, "B", (99, 1)), (3, "C", (500,)), (4, "D", (5,)), (5, "E", (4,)))
    assert [d.post_nums for d in build_dialogs(posts)] == [(2, 1), (5, 4)]
    assert count_links(posts) == (5, 2)


def test_identical_dialogs_are_kept_once():
    posts = nodes((1, "A", ()), (2, "копипаста", (1,)), (3, "КОПИПАСТА", (1,)))
    assert [d.post_nums for d in build_dialogs(posts, lowercase=True)] == [(2, 1)]
    assert len(build_dialogs(posts, lowercase=False)) == 2


def test_only_given_leaves():
    posts = nodes((1, "A", ()), (2, "B", (1,)), (3, "C", (2,)))
    assert [d.post_nums for d in build_dialogs(posts, [3])] == [(3, 2, 1)]


def test_edge_case_thread():
    raw, expect = edge_case_thread()
    thread = parse_thread(json.loads(raw), "b", EDGE_THREAD)
    assert len(thread.rejected) == 1 and "comment" in thread.rejected[0]  # post 5015, 150,000 characters
    assert [p.num for p in thread.posts] == sorted(expect)
    posts = {}
    for post in thread.posts:
        clean = clean_comment(post.comment)
        usable, parents, _ = expect[post.num]
        assert (clean.usable, clean.parents) == (usable, parents), post.num
        posts[post.num] = PostNode(post.num, clean.text, clean.parents, clean.usable)
    assert {d.post_nums for d in build_dialogs(posts, max_turns=6)} == EDGE_DIALOGS
    hostile = posts[5012].text
    assert "alert" not in hostile and "display" not in hostile and "внутри" not in hostile
    assert "незакрытые теги" in hostile and "\x00" not in hostile
    assert posts[5011].text == "спойлер жирный курсив <3 /b/"
    assert posts[5002].text == 'А мой "кот" — собака & лиса'
