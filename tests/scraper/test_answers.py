"""Whom a post answers (issue 20): a post answering several people in turn gives one pair per
person; only links that start the post or a line are parents; a quoted `>>N` leaves no `>`.

A thread written here in the 2ch API shape proves each rule (always runs), through the parser
and through a crawl into Postgres; recorded multi-answer posts from ../shared/data/2ch (skipped
without it) and the `pairs` report show the rules on real threads.
"""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import text

from services.scraper.api_models import parse_thread
from services.scraper.bench import thread_nodes
from services.scraper.cleaning import Answer, clean_comment
from services.scraper.dialogs import PostNode, build_dialogs, pairs
from services.scraper.pairs_report import legacy_nodes, report
from services.scraper.store.threads import answers_from_json, answers_to_json
from tests.scraper.conftest import crawl, make_config
from tests.scraper.fixtures import post, reply_link, thread_json

T, B = 7000, "b"


def link(num: int, **kw) -> str:
    return reply_link(B, T, num, **kw)


def tea_posts() -> list[dict]:
    """A /b/ thread about tea, one rule per post."""
    return [
        post(7000, T, "Тред о чае."),
        post(7001, T, f"{link(7000, op=True)}<br>Пуэр лучше всего."),
        post(7002, T, f"{link(7000, op=True)}<br>Улун."),
        # answers two people in turn: one pair each
        post(7003, T, f"{link(7001)}<br>Пуэр пахнет землёй.<br>{link(7002)}<br>Улун норм."),
        # answers the post that answered two people: the chain stops there
        post(7004, T, f"{link(7003)}<br>Оба неправы, зелёный лучше."),
        # two links, then one text for both: one pair, to the first
        post(7005, T, f"{link(7001)}<br>{link(7002)}<br>Вы оба про чай."),
        # a link in a sentence before a line-start link: the line-start link is the parent
        post(7006, T, f"Как уже сказал {link(7002)} улун хорош.<br>{link(7001)}<br>Пуэр дорогой."),
        # links in sentences only: mentions, no pair
        post(7007, T, f"Согласен с {link(7001)} и всё."),
        # a numbered list of links, and an HTML list: no pair
        post(7008, T, f"Лучшие ответы:<br>1. {link(7001)}<br>2) {link(7002)}"),
        post(7009, T, f"<ol><li>{link(7001)} пуэр</li><li>{link(7002)} улун</li></ol>"),
        # a line-start link to a deleted post wins over a link in a sentence: no pair
        post(7010, T, f"{link(6999)}<br>Кстати, {link(7001)} прав."),
        # a quoted plain-text >>N and a quoted link leave no '>'
        post(7011, T, '<span class="unkfunc">&gt;&gt;&gt;7001</span><br>Это не ссылка.'),
        post(7012, T, f'<span class="unkfunc">&gt;{link(7002)}</span><br>Цитирую ссылку.'),
        # two parts for the same person: one answer, the whole text
        post(7013, T, f"{link(7001)}<br>Во-первых, нет.<br>{link(7001)}<br>Во-вторых, тоже нет."),
        # a last link with nothing after it: the text answers the first
        post(7014, T, f"{link(7001)}<br>Смотри сюда<br>{link(7002)}"),
        # an ordinary chain through a post with one answer
        post(7017, T, f"{link(7005)}<br>Да, про чай."),
    ]


TEA_DIALOGS = {
    (7001, 7000),
    (7002, 7000),
    (7003, 7001, 7000),
    (7003, 7002, 7000),
    (7004, 7003),
    (7005, 7001, 7000),
    (7006, 7001, 7000),
    (7012, 7002, 7000),
    (7013, 7001, 7000),
    (7014, 7001, 7000),
    (7017, 7005, 7001, 7000),
}


def tea_nodes(posts: list[dict] | None = None) -> dict[int, PostNode]:
    return thread_nodes(thread_json(B, posts or tea_posts()), B, T)


def test_each_rule_on_a_written_thread():
    nodes = tea_nodes()
    answers = {num: node.answers for num, node in nodes.items()}
    assert answers[7003] == (Answer((7001,), "Пуэр пахнет землёй."), Answer((7002,), "Улун норм."))
    assert nodes[7003].text == "Пуэр пахнет землёй. Улун норм."
    assert answers[7005] == (Answer((7001, 7002), "Вы оба про чай."),)
    assert answers[7006] == (Answer((7001,), "Как уже сказал улун хорош. Пуэр дорогой."),)
    assert nodes[7006].parents == (7002, 7001)  # every link is still recorded, in order
    assert answers[7007] == answers[7008] == answers[7009] == answers[7011] == ()
    assert answers[7010] == (Answer((6999,), "Кстати, прав."),)
    assert nodes[7011].text == "Это не ссылка."
    assert answers[7012] == (Answer((7002,), "Цитирую ссылку."),)
    assert answers[7013] == (Answer((7001,), "Во-первых, нет. Во-вторых, тоже нет."),)
    assert answers[7014] == (Answer((7001,), "Смотри сюда"),)

    found = [(p.post, p.part, p.parent, p.text) for p in pairs(nodes)]
    assert [f for f in found if f[0] == 7003] == [
        (7003, 0, 7001, "Пуэр пахнет землёй."),
        (7003, 1, 7002, "Улун норм."),
    ]
    assert not {7007, 7008, 7009, 7010, 7011} & {f[0] for f in found}

    dialogs = {d.post_nums: d.turns for d in build_dialogs(nodes, max_turns=6, lowercase=True)}
    assert set(dialogs) == TEA_DIALOGS
    assert dialogs[7003, 7002, 7000] == ("улун норм.", "улун.", "тред о чае.")
    assert dialogs[7004, 7003] == ("оба неправы, зелёный лучше.", "пуэр пахнет землёй. улун норм.")


def test_the_replaced_rule_on_the_same_thread():
    """What the scraper did before: the first link that resolves, wherever it stands, whole text."""
    legacy = {(p.post, p.parent) for p in pairs(legacy_nodes(tea_nodes()))}
    assert {(7003, 7001), (7007, 7001), (7008, 7001), (7009, 7001), (7010, 7001), (7006, 7002)} <= legacy
    assert (7003, 7002) not in legacy


def test_answers_survive_the_database_column():
    nodes = tea_nodes()
    for node in nodes.values():
        assert answers_from_json(answers_to_json(node.answers), node.text) == node.answers
    assert answers_to_json(nodes[7006].answers) == [{"to": [7001]}]  # one answer: the post's text
    assert answers_from_json(None, "x") is None


def test_split_posts_in_html_blocks_and_with_drop_quotes():
    clean = clean_comment(f"<p>{link(7001)} Пуэр.</p><p>{link(7002)} Улун.</p>")
    assert clean.answers == (Answer((7001,), "Пуэр."), Answer((7002,), "Улун."))
    quoted = f'{link(7001)}<br><span class="unkfunc">&gt;пуэр</span><br>Да.<br>{link(7002)}<br>Нет.'
    assert clean_comment(quoted, drop_quotes=True).answers == (Answer((7001,), "Да."), Answer((7002,), "Нет."))
    assert clean_comment(quoted).answers[0] == Answer((7001,), ">пуэр Да.")


async def test_crawl_stores_answers_and_old_rows_keep_the_old_rule(engine, dvach):
    dvach.serve_thread(B, thread_json(B, tea_posts()))
    config = make_config(dvach, boards=(B,), min_replies=5)
    report1 = await crawl(engine, config)
    assert report1.status == "finished" and report1.counts.errors == 0
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT num, answers FROM posts")).all())
        dialogs = {tuple(r[0]): r[1] for r in conn.execute(text("SELECT post_nums, turns FROM dialogs"))}
    assert stored[7003] == [{"to": [7001], "text": "Пуэр пахнет землёй."}, {"to": [7002], "text": "Улун норм."}]
    assert stored[7005] == [{"to": [7001, 7002]}] and stored[7007] == []
    assert set(dialogs) == TEA_DIALOGS
    assert dialogs[7003, 7001, 7000][0] == "пуэр пахнет землёй."

    # A post stored before the answers column (NULL) is read with the rule of its time: its first
    # link that resolves is its parent, so a chain through it goes on.
    with engine.begin() as conn:
        conn.execute(text("UPDATE posts SET answers = NULL WHERE num = 7003"))
    grown = [*tea_posts(), post(7018, T, f"{link(7003)}<br>Сам ты земля.")]
    dvach.serve_thread(B, thread_json(B, grown))
    report2 = await crawl(engine, config)
    assert report2.counts.posts_added == 1 and report2.counts.dialogs_added == 1
    with engine.connect() as conn:
        new = conn.execute(text("SELECT post_nums FROM dialogs WHERE post_nums->>0 = '7018'")).scalar_one()
    assert new == [7018, 7003, 7001, 7000]


# Recorded posts that answer several people, or link in sentences and lists (../shared/data/2ch).
RECORDED_ANSWERS = {
    ("dvachbrowser3_8058183.json", 8058768): [(8058753,), (8058752,)],
    ("dvachbrowser3_8058183.json", 8059098): [(8059068,), (8059057,), (8059079,)],
    ("imageboard10_po_thread.json", 23335865): [(23335787,), (23335800,)],
    ("imageboard10_po_thread.json", 23336023): [(23336000,), (23336001,)],
    # several links, then one text: one answer
    ("imageboard10_po_thread.json", 23335471): [(23335434, 23335443, 23335444)],
    # two parts for the same post: one answer
    ("dvachbrowser3_8071880.json", 8075332): [(8075047,)],
    # a last link with nothing after it
    ("imageboard10_po_thread.json", 23335525): [(23335467,)],
    # a second link at the end of a sentence is a mention
    ("dvachbrowser3_8058183.json", 8064617): [(8064596,)],
    # links in a numbered list and at the end of a sentence only: answers no one
    ("imageboard10_mobi_thread_2.json", 1162609): [],
}


def test_recorded_multi_answer_posts(recorded_dir):
    by_file: dict[str, dict[int, PostNode]] = {}
    for (name, num), expected in RECORDED_ANSWERS.items():
        if name not in by_file:
            raw = (recorded_dir / name).read_bytes()
            first = json.loads(raw)["threads"][0]["posts"][0]
            board = "mobi" if "mobi" in name else "po"
            by_file[name] = thread_nodes(raw, board, int(first["num"]))
        node = by_file[name][num]
        assert [answer.to for answer in node.answers] == expected, (name, num)
        if len(expected) > 1:
            assert all(answer.text and answer.text in node.text for answer in node.answers)
            assert " ".join(answer.text for answer in node.answers) == node.text
    split = by_file["dvachbrowser3_8058183.json"]
    assert [(p.parent, p.text) for p in pairs(split, [8058768])] == [
        (8058753, "Мне ок."),
        (8058752, "Я хочу в это верить, чувак."),
    ]
    # `>>>8072586` in a quote (a link 2ch did not make) leaves no `>`
    raw = (recorded_dir / "dvachbrowser3_8071880.json").read_bytes()
    thread = parse_thread(json.loads(raw), "po", 8071880)
    comment = next(p.comment for p in thread.posts if p.num == 8072659)
    assert clean_comment(comment).text.startswith("Да что ты, Маня.")


def test_pairs_report_on_the_recorded_threads(recorded_dir):
    figures = report(recorded_dir)
    assert figures["threads"] == 6
    assert figures["split_posts"] > 40 and figures["pairs_from_split_posts"] > 2 * 40
    assert figures["pairs_after"] == figures["pairs_before"] - figures["removed"] + figures["added"]
    assert figures["pairs_before"] == (
        figures["same"] + figures["same_parent_new_text"] + figures["changed_parent"] + figures["removed"]
    )
    assert figures["removed"] + figures["changed_parent"] < 10  # few links stand in sentences or lists
    moved = {change["post"] for thread in figures["per_thread"] for change in thread["changes"]}
    assert 1162609 in moved


def test_pairs_command(recorded_dir):
    result = subprocess.run(
        [sys.executable, "-m", "services.scraper", "pairs", str(recorded_dir), "--changes"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(result.stdout)
    assert figures["pairs_after"] > figures["pairs_before"] > 1000 and len(figures["per_thread"]) == 6


def test_hostile_input_cannot_forge_or_flood_answers():
    # NULs mark the links inside the cleaner; the HTML parser drops those of the input.
    forged = clean_comment(f"{link(7001)}<br>а\x001\x00б &#0;5&#0; в<br>\x002\x00")
    assert forged.answers == (Answer((7001,), forged.text),) and "\x00" not in forged.text
    roll_call = clean_comment("".join(f"{link(n)}<br>ответ {n}<br>" for n in range(8000, 8040)))
    assert len(roll_call.parents) == 32 and len(roll_call.answers) == 32
    assert roll_call.answers[-1] == Answer((8031,), "ответ 8031")
