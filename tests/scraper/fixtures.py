"""Threads written for the tests in the 2ch format (`/{board}/res/{num}.json`), for edge cases the
recorded data lacks or has too few of: deleted parents, replies to several posts, replies to other
threads, bump/sage posts, HTML oddities and hostile HTML, wrong types.
"""

from __future__ import annotations

import json


def reply_link(board: str, thread: int, num: int, op: bool = False, other_thread: bool = False) -> str:
    """The reply-link markup of 2ch/makaba."""
    suffix = " (OP)" if op else (" →" if other_thread else "")
    return (
        f'<a href="/{board}/res/{thread}.html#{num}" class="post-reply-link" '
        f'data-thread="{thread}" data-num="{num}">&gt;&gt;{num}{suffix}</a>'
    )


def post(num: int, thread: int, comment: str, *, timestamp: int | None = None, email: str = "", **extra) -> dict:
    return {
        "banned": 0,
        "closed": 0,
        "comment": comment,
        "date": "01/01/24 Пнд 00:00:00",
        "email": email,
        "files": [],
        "lasthit": 0,
        "name": "Аноним",
        "num": num,
        "number": 0,
        "op": 0,
        "parent": "0" if num == thread else str(thread),
        "sticky": 0,
        "subject": "",
        "timestamp": timestamp if timestamp is not None else 1_700_000_000 + num,
        "trip": "",
        **extra,
    }


def thread_json(board: str, posts: list[dict], **extra) -> bytes:
    """A whole thread response, as /{board}/res/{num}.json returns it."""
    num = posts[0]["num"]
    return json.dumps(
        {"Board": board, "current_thread": num, "max_num": posts[-1]["num"], "threads": [{"posts": posts}], **extra},
        ensure_ascii=False,
    ).encode()


EDGE_THREAD = 5000
EDGE_BOARD = "b"


def edge_case_thread() -> tuple[bytes, dict]:
    """A /b/ thread full of edge cases, and what the scraper should make of it.

    Returns the JSON and `expect`: post num -> (usable, parents, first in-thread parent or None).
    """
    t, b = EDGE_THREAD, EDGE_BOARD

    def link(num: int, **kw) -> str:
        return reply_link(b, t, num, **kw)

    posts = [
        post(5000, t, "Тред про котов.<br>Постим котов, обсуждаем котов."),
        post(5001, t, f"{link(5000, op=True)}<br>Мой кот спит весь день."),
        # replies to a deleted post first, then to a live one: the live one is the parent
        post(5002, t, f"{reply_link(b, t, 4999)} {link(5001)}<br>А мой &quot;кот&quot; — собака &amp; лиса"),
        # replies to several posts: the first is the parent, all are recorded
        post(5003, t, f"{link(5001)}<br>{link(5002)}<br>Оба неправы."),
        # a reply to a post of another thread: recorded, never followed
        post(5004, t, f"{reply_link(b, 4000, 4001, other_thread=True)}<br>Это из другого треда."),
        post(5005, t, "Бамп годному треду"),
        post(5006, t, f"{link(5005)}<br>Зачем бампаешь?"),
        post(5007, t, f'{link(5006)}<br><span class="unkfunc">&gt;Зачем бампаешь?</span><br>Потому что.'),
        post(5008, t, "сажа", email="mailto:sage"),
        post(5009, t, f"{link(5007)}"),  # only a link: nothing left, no turn
        post(5010, t, f"{link(5009)} а ты кто"),  # answers an empty post: no dialog
        # HTML oddities: spoiler, emphasis, external link, entities, nbsp, repeated link, no breaks
        post(
            5011,
            t,
            f'{link(5003)}{link(5003)}<span class="spoiler">спойлер</span> <strong>жирный</strong>'
            f'&nbsp;<em>курсив</em> <a href="https:&#47;&#47;example.com&#47;x" target="_blank">'
            f"https:&#47;&#47;example.com&#47;x</a> &lt;3 &#47;b&#47;",
        ),
        # hostile: scripts, styles, event handlers, a huge attribute, unclosed tags, control characters
        post(
            5012,
            t,
            f"{link(5011)}<script>alert('x')</script><style>body{{display:none}}</style>"
            f'<img src=x onerror="alert(1)"><span title="{"A" * 50_000}">привет</span> '
            f'<b><i>незакрытые теги\u0000\u200b<iframe src="javascript:alert(1)">внутри</iframe>',
        ),
        # a link to a later post (impossible on the site, possible in hostile data): not followed
        post(5013, t, f"{link(5014)}<br>Из будущего."),
        post(5014, t, f"{link(5013)}<br>Петля."),
        # far longer than any real post (2ch allows 15,000 characters): skipped, with a log line
        post(5015, t, f"{link(5014)}" + "флуд " * 30_000),
    ]
    expect = {
        5000: (True, (), None),
        5001: (True, (5000,), 5000),
        5002: (True, (4999, 5001), 5001),
        5003: (True, (5001, 5002), 5001),
        5004: (True, (4001,), None),
        5005: (False, (), None),
        5006: (True, (5005,), 5005),
        5007: (True, (5006,), 5006),
        5008: (False, (), None),
        5009: (False, (5007,), 5007),
        5010: (True, (5009,), 5009),
        5011: (True, (5003,), 5003),
        5012: (True, (5011,), 5011),
        5013: (True, (5014,), None),
        5014: (True, (5013,), 5013),
    }
    return thread_json(b, posts), expect


# The dialogs (post numbers, newest first) the edge-case thread must give with 6 turns at most.
EDGE_DIALOGS = {
    (5001, 5000),
    (5002, 5001, 5000),
    (5003, 5001, 5000),
    (5007, 5006),
    (5011, 5003, 5001, 5000),
    (5012, 5011, 5003, 5001, 5000),
    (5014, 5013),
}
