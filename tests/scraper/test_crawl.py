"""Crawls over real HTTP (a local 2ch stand-in) into a real Postgres: recorded and written threads."""

from __future__ import annotations

import html
import json
import re

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from services.scraper.dialogs import turns_hash
from shared.db import make_engine
from tests.scraper.conftest import (
    MOBI_SNAPSHOT_1,
    MOBI_SNAPSHOT_2,
    PO_THREADS,
    clone_database,
    crawl,
    drop_database,
    make_config,
    serve_recorded,
)
from tests.scraper.dvach_server import DvachServer, listing_entry
from tests.scraper.fixtures import EDGE_BOARD, EDGE_DIALOGS, edge_case_thread

ANCHOR = re.compile(r"<a\b[^>]*\bclass=\"post-reply-link\"[^>]*>")
DATA_NUM = re.compile(r"\bdata-num=\"([0-9]+)\"")


LINE = re.compile(r"<br\s*/?>|</?(?:p|div|li|ul|ol|blockquote|pre|h[1-6]|tr|table|hr|dd|dt)\b[^>]*>", re.IGNORECASE)
REPLY_ANCHOR = re.compile(r"<a\b[^>]*\bclass=\"post-reply-link\"[^>]*>.*?</a>", re.DOTALL)
TAG = re.compile(r"<[^>]*>")
NOT_SAID = re.compile(r"(?:https?://|www\.)\S+|>*>>\s*[0-9]+|[>\s]")


def raw_answers(comment: str) -> list[list[int]]:
    """The link groups a post answers with, from its raw HTML: one group per run of reply links
    that start a line, each followed by words, groups with the same links merged; a post with one
    such group or none answers with every line-start link (no list when it has none)."""
    groups: list[tuple[list[int], list[str]]] = []
    starts: list[int] = []
    for line in LINE.split(comment):
        before = ""
        for piece in re.split(f"({REPLY_ANCHOR.pattern})", line, flags=re.DOTALL):
            num = DATA_NUM.search(piece) if REPLY_ANCHOR.fullmatch(piece) else None
            words = lambda s: NOT_SAID.sub("", html.unescape(TAG.sub(" ", s)))  # noqa: E731
            if num is None:
                before += piece
                if groups:
                    groups[-1][1].append(words(piece))
                continue
            if words(before) or re.match(r"\s*[0-9]{1,3}[.)]", html.unescape(TAG.sub(" ", line))):
                continue  # in a sentence or a numbered list: a mention
            starts.append(int(num.group(1)))
            if groups and not "".join(groups[-1][1]):
                groups[-1][0].append(int(num.group(1)))
            else:
                groups.append(([int(num.group(1))], []))
    said = list(dict.fromkeys(tuple(to) for to, chunks in groups if "".join(chunks)))
    if len(said) > 1:
        return [list(to) for to in said]
    return [list(said[0])] if said else [starts] if starts else []


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def recorded_posts(recorded, names) -> dict[tuple[str, int], list[dict]]:
    out = {}
    for board, name in names:
        data = json.loads((recorded / name).read_bytes())
        posts = data["threads"][0]["posts"]
        out[(board, int(posts[0]["num"]))] = posts
    return out


@pytest.fixture(scope="module")
async def recorded_crawl(template_db, recorded_dir):
    """One crawl of the recorded /po/ and /mobi/ data into a database of its own."""
    url = clone_database(template_db)
    engine = make_engine(url)
    server = DvachServer().start()
    serve_recorded(server, recorded_dir)
    config = make_config(server)
    before = {
        "posts": metric("dvach_scraper_posts_added_total", board="po"),
        "fetched": metric("dvach_scraper_threads_fetched_total", board="po"),
        "404": metric("dvach_scraper_http_requests_total", status="404"),
    }
    report = await crawl(engine, config)
    yield engine, server, config, report, before
    server.stop()
    engine.dispose()
    drop_database(url)


async def test_recorded_crawl_stores_every_post_and_records_the_run(recorded_crawl, recorded_dir):
    engine, server, config, report, before = recorded_crawl
    threads = recorded_posts(recorded_dir, [("po", n) for n in PO_THREADS] + [("mobi", MOBI_SNAPSHOT_2)])
    total_posts = sum(len(posts) for posts in threads.values())
    assert report.status == "finished" and report.counts.errors == 0, report.errors
    assert report.counts.threads_fetched == 5
    assert report.counts.posts_added == total_posts == scalar(engine, "SELECT count(*) FROM posts")
    for (board, num), posts in threads.items():
        assert scalar(engine, "SELECT count(*) FROM posts WHERE board = :b AND thread_num = :t", b=board, t=num) == len(
            posts
        )
    assert report.counts.dialogs_added == scalar(engine, "SELECT count(*) FROM dialogs") > 1000
    # The /mobi/ catalog lists 122 threads over 20 replies; only the recorded one exists (the rest 404).
    assert report.counts.threads_seen == 4 + 122
    assert scalar(engine, "SELECT count(*) FROM threads") == 5

    with engine.connect() as conn:
        run = conn.execute(text("SELECT * FROM scrape_runs ORDER BY id DESC LIMIT 1")).mappings().one()
    assert run["status"] == "finished" and run["finished_at"] is not None
    assert (run["threads_fetched"], run["posts_added"], run["dialogs_added"]) == (
        5,
        report.counts.posts_added,
        report.counts.dialogs_added,
    )
    assert run["boards"] == ["po", "mobi"]

    assert metric("dvach_scraper_posts_added_total", board="po") - before["posts"] == sum(
        len(p) for (b, _), p in threads.items() if b == "po"
    )
    assert metric("dvach_scraper_threads_fetched_total", board="po") - before["fetched"] == 4
    assert metric("dvach_scraper_http_requests_total", status="404") - before["404"] == 121
    assert metric("dvach_scraper_last_run_timestamp_seconds") > 0

    # Polite: an honest User-Agent on every request, never more in flight than configured.
    assert {headers.get("User-Agent") for _, headers in server.requests} == {config.scraper_user_agent}
    assert 1 <= server.max_in_flight <= config.scraper_concurrency


async def test_dialogs_follow_the_raw_reply_links(recorded_crawl, recorded_dir):
    """Expected chains derived independently, with regular expressions, from the raw JSON's lines
    and `data-num` attributes (the scraper walks the parsed HTML)."""
    engine, *_ = recorded_crawl
    threads = recorded_posts(recorded_dir, [("po", n) for n in PO_THREADS] + [("mobi", MOBI_SNAPSHOT_2)])
    split_posts = 0
    for (board, num), posts in threads.items():
        with engine.connect() as conn:
            stored = {
                row.num: row
                for row in conn.execute(
                    text("SELECT num, text, is_usable, parents FROM posts WHERE board = :b AND thread_num = :t"),
                    {"b": board, "t": num},
                )
            }
            dialogs = {
                tuple(row.post_nums): row.turns
                for row in conn.execute(
                    text("SELECT post_nums, turns FROM dialogs WHERE board = :b AND thread_num = :t"),
                    {"b": board, "t": num},
                )
            }
        answers = {}
        for post in posts:
            targets = [int(m.group(1)) for a in ANCHOR.findall(post["comment"]) if (m := DATA_NUM.search(a))]
            assert stored[int(post["num"])].parents == list(dict.fromkeys(targets))[:32]
            answers[int(post["num"])] = raw_answers(post["comment"])
        split_posts += sum(1 for parts in answers.values() if len(parts) > 1)

        def parent(num: int, to: list[int]) -> int | None:
            return next((t for t in to if t < num and t in answers), None)  # noqa: B023

        expected = set()
        for leaf, parts in answers.items():
            if not stored[leaf].is_usable:
                continue
            for to in parts:
                chain = [leaf]
                up = parent(leaf, to)
                while up is not None and stored[up].is_usable and len(chain) < 6:
                    chain.append(up)
                    up = parent(up, answers[up][0]) if len(answers[up]) == 1 else None
                if len(chain) >= 2:
                    expected.add(tuple(chain))
        assert set(dialogs) <= expected
        for chain in expected - set(dialogs):  # kept once when its turns repeat another dialog's
            assert len(answers[chain[0]]) == 1
            turns = [stored[n].text.lower() for n in chain]
            assert scalar(engine, "SELECT count(*) FROM dialogs WHERE turns_hash = :h", h=turns_hash(turns)) == 1
        assert len(dialogs) >= 0.9 * len(expected) > 50
        for chain, turns in dialogs.items():
            assert turns[1:] == [stored[n].text.lower() for n in chain[1:]]
            if len(answers[chain[0]]) == 1:
                assert turns[0] == stored[chain[0]].text.lower()
            else:  # one part of a post answering several people
                assert turns[0] in stored[chain[0]].text.lower() and turns[0] != stored[chain[0]].text.lower()
            assert not any(re.search(r">>\d", turn) or "post-reply-link" in turn for turn in turns)
    assert split_posts > 40  # 46 in the recorded threads


async def test_second_crawl_adds_nothing(recorded_crawl):
    engine, server, config, _first, _ = recorded_crawl

    def counts() -> list:
        return [scalar(engine, f"SELECT count(*) FROM {t}") for t in ("threads", "posts", "dialogs")]

    stored_paths = {f"/po/res/{n}.json" for n in (8058183, 8071880, 8073454, 23334842)} | {"/mobi/res/1153568.json"}
    before = counts()

    start = len(server.requests)
    again = await crawl(engine, config)
    assert (again.status, again.counts.posts_added, again.counts.dialogs_added, again.counts.threads_fetched) == (
        "finished",
        0,
        0,
        0,
    )
    assert again.counts.threads_unchanged == 5
    assert not stored_paths & {path for path, _ in server.requests[start:]}  # the listing said: nothing new

    start = len(server.requests)
    forced = await crawl(engine, config, force=True)  # asks anyway: conditional requests get 304
    assert (forced.counts.posts_added, forced.counts.dialogs_added, forced.counts.threads_unchanged) == (0, 0, 5)
    conditional = [h for p, h in server.requests[start:] if p in stored_paths]
    assert len(conditional) == 5 and all(h.get("If-None-Match") for h in conditional)

    server.etags = False  # a server without ETags: the whole JSON again, still nothing twice
    try:
        full = await crawl(engine, config, force=True)
    finally:
        server.etags = True
    assert (full.counts.threads_fetched, full.counts.posts_added, full.counts.dialogs_added) == (5, 0, 0)
    assert counts() == before
    assert scalar(engine, "SELECT count(*) FROM scrape_runs WHERE status = 'finished'") >= 4


async def test_incremental_crawl_adds_only_new_posts(engine, dvach, recorded_dir):
    first = dvach.serve_thread("mobi", recorded_dir / MOBI_SNAPSHOT_1)
    config = make_config(dvach, boards=("mobi",))
    report1 = await crawl(engine, config)
    old = {int(p["num"]) for p in json.loads((recorded_dir / MOBI_SNAPSHOT_1).read_bytes())["threads"][0]["posts"]}
    new = {int(p["num"]) for p in json.loads((recorded_dir / MOBI_SNAPSHOT_2).read_bytes())["threads"][0]["posts"]}
    assert report1.counts.posts_added == len(old)
    last_dialog = scalar(engine, "SELECT max(id) FROM dialogs")

    assert dvach.serve_thread("mobi", recorded_dir / MOBI_SNAPSHOT_2) == first  # the same thread, grown
    report2 = await crawl(engine, config)
    assert report2.counts.threads_fetched == 1
    assert report2.counts.posts_added == len(new - old) > 400
    assert scalar(engine, "SELECT count(*) FROM posts") == len(old | new)
    assert (
        report2.counts.dialogs_added == scalar(engine, "SELECT count(*) FROM dialogs WHERE id > :i", i=last_dialog) > 0
    )
    with engine.connect() as conn:
        leaves = {
            row[0]
            for row in conn.execute(
                text("SELECT (post_nums->>0)::bigint FROM dialogs WHERE id > :i"), {"i": last_dialog}
            )
        }
    assert leaves <= new - old


async def test_threads_that_fell_off_the_board_are_kept(engine, dvach, recorded_dir):
    for name in PO_THREADS[:2]:
        dvach.serve_thread("po", recorded_dir / name)
    config = make_config(dvach, boards=("po",))
    await crawl(engine, config)

    def seen(num: int):
        return scalar(engine, "SELECT last_seen_at FROM threads WHERE num = :n", n=num)

    gone_before, kept_before = seen(8058183), seen(8071880)
    posts_before = scalar(engine, "SELECT count(*) FROM posts WHERE thread_num = 8058183")

    dvach.remove_thread("po", 8058183)
    report = await crawl(engine, config)
    assert report.status == "finished" and report.counts.threads_seen == 1
    assert scalar(engine, "SELECT count(*) FROM posts WHERE thread_num = 8058183") == posts_before == 208
    assert seen(8058183) == gone_before and seen(8071880) > kept_before


async def test_written_edge_cases_end_up_right_in_the_database(engine, dvach):
    raw, expect = edge_case_thread()
    dvach.serve_thread(EDGE_BOARD, raw)
    report = await crawl(engine, make_config(dvach, boards=(EDGE_BOARD,), min_replies=5))
    assert report.status == "finished" and report.counts.threads_fetched == 1
    assert report.counts.errors == 1 and "5015" not in str(report.errors) and "comment" in report.errors[0]
    with engine.connect() as conn:
        posts = {
            row.num: row for row in conn.execute(text("SELECT num, text, parents, is_usable, raw_html FROM posts"))
        }
        dialogs = {tuple(row[0]) for row in conn.execute(text("SELECT post_nums FROM dialogs"))}
    assert set(posts) == set(expect)  # the 150,000-character post was skipped
    for num, (usable, parents, _) in expect.items():
        assert (posts[num].is_usable, tuple(posts[num].parents)) == (usable, parents), num
    assert dialogs == EDGE_DIALOGS
    assert posts[5004].parents == [4001]  # a link to another thread is recorded
    assert "alert" not in posts[5012].text and "\x00" not in posts[5012].raw_html


async def test_listing_falls_back_to_threads_json(engine, dvach, recorded_dir):
    """/po/ with no catalog.json: the recorded threads.json is used (its threads are gone: 404)."""
    dvach.boards["po"].catalog = False
    dvach.boards["po"].threads_file = recorded_dir / "imageboard10_threads.json"
    report = await crawl(engine, make_config(dvach, boards=("po",)))
    assert report.status == "finished" and report.counts.threads_seen == 101
    assert "/po/threads.json" in dvach.paths_requested()
    assert len(dvach.paths_requested("/po/res/")) == 101


def test_listing_entries_made_by_the_stand_in_match_the_recorded_thread(recorded_dir):
    entry = listing_entry((recorded_dir / PO_THREADS[1]).read_bytes())
    assert entry["num"] == "8071880" and entry["posts_count"] == 130
