"""Validation of API responses and cleaning of post HTML (no network, no database)."""

from __future__ import annotations

import json

import pytest

from services.scraper.api_models import MalformedResponse, parse_listing, parse_thread
from services.scraper.cleaning import clean_comment, unusable_reason
from shared.settings import parse_boards
from tests.scraper.conftest import MOBI_CATALOG, MOBI_SNAPSHOT_2, PO_THREADS, PO_THREADS_LISTING
from tests.scraper.fixtures import post, reply_link, thread_json


def test_recorded_threads_and_listings_validate(recorded_dir):
    for name in [*PO_THREADS, MOBI_SNAPSHOT_2]:
        data = json.loads((recorded_dir / name).read_bytes())
        num = int(data["threads"][0]["posts"][0]["num"])
        thread = parse_thread(data, "po", num)
        assert thread.rejected == []
        assert len(thread.posts) == len(data["threads"][0]["posts"])
        # `parent` is a string in these files, `num` an int: both end up ints.
        assert all(p.parent == num for p in thread.posts[1:])
    catalog = parse_listing(json.loads((recorded_dir / MOBI_CATALOG).read_bytes()))
    assert catalog.rejected == 0 and len(catalog.threads) == 301
    assert any(t.num == 1153568 for t in catalog.threads)  # strings in catalogs
    listing = parse_listing(json.loads((recorded_dir / PO_THREADS_LISTING).read_bytes()))
    assert len(listing.threads) == 166 and all(t.posts_count >= 0 for t in listing.threads)


def test_numbers_are_ints_or_digit_strings_only():
    ok = parse_thread({"threads": [{"posts": [post(10, 10, "a"), {**post(11, 10, "b"), "num": "11"}]}]}, "b", 10)
    assert [p.num for p in ok.posts] == [10, 11]
    bad = [
        {**post(12, 10, "x"), "num": "12abc"},
        {**post(13, 10, "x"), "num": 13.5},
        {**post(14, 10, "x"), "num": True},
        {**post(15, 10, "x"), "num": -15},
        {**post(16, 10, "x"), "comment": {"html": "x"}},
        {**post(17, 10, "x"), "comment": "x" * 100_001},
        "not a post",
        {**post(10, 10, "duplicate")},
    ]
    parsed = parse_thread({"threads": [{"posts": [post(10, 10, "op"), *bad]}]}, "b", 10)
    assert [p.num for p in parsed.posts] == [10]
    assert len(parsed.rejected) == len(bad)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"threads": "oops"},
        {"threads": []},
        {"threads": [{"posts": []}]},
        {"threads": [{"posts": "oops"}]},
        {"threads": [{"posts": [post(99, 99, "another thread's opening post")]}]},
        {"threads": [{"posts": [{"num": "x"}]}]},
    ],
)
def test_malformed_threads_are_rejected_whole(data):
    with pytest.raises(MalformedResponse):
        parse_thread(data, "b", 10)


def test_bad_listing_entries_are_skipped():
    parsed = parse_listing({"threads": [{"num": "1", "posts_count": 30}, {"num": None}, "x", {"num": "1"}]})
    assert [t.num for t in parsed.threads] == [1] and parsed.rejected == 2
    with pytest.raises(MalformedResponse):
        parse_listing({"Board": "b"})


def test_lone_surrogates_and_nul_do_not_survive_validation():
    raw = b'{"threads": [{"posts": [{"num": 1, "comment": "a\\ud800b\\u0000c"}]}]}'
    comment = parse_thread(json.loads(raw), "b", 1).posts[0].comment
    assert "\x00" not in comment
    comment.encode("utf-8")  # would raise on a lone surrogate


def test_reply_links_become_parents_and_leave_the_text():
    html = (
        f"{reply_link('b', 1, 1, op=True)}<br>{reply_link('b', 1, 7)} {reply_link('b', 1, 7)}"
        f"<br>{reply_link('b', 2, 9, other_thread=True)}<br>ответ"
    )
    clean = clean_comment(html)
    assert clean.parents == (1, 7, 9)
    assert clean.text == "ответ" and clean.usable


def test_quotes_spoilers_links_entities_and_whitespace():
    html = (
        '<span class="unkfunc">&gt;цитата</span><br>  текст&nbsp;с   '
        '<span class="spoiler">спойлером</span><br><br><strong>и</strong> <em>ссылкой</em> '
        '<a href="https:&#47;&#47;ya.ru" target="_blank">https:&#47;&#47;ya.ru</a> '
        '<a href="/b/">на доску</a> &quot;кавычки&quot; &amp; &#47;b&#47; www.example.com/x'
    )
    assert clean_comment(html).text == '>цитата текст с спойлером и ссылкой на доску "кавычки" & /b/'
    assert clean_comment(html, drop_quotes=True).text.startswith("текст с спойлером")


def test_plain_text_references_are_removed_but_not_parents():
    clean = clean_comment('<span class="unkfunc">&gt;&gt;807428</span><br>&gt;&gt;12 (OP) ну и что')
    assert clean.parents == () and clean.text == "ну и что"


def test_hostile_html_is_reduced_to_its_text():
    html = (
        "<script>alert('x')</script><style>*{}</style><img src=x onerror=alert(1)>"
        f'<span title="{"A" * 500_000}">привет</span><iframe src=javascript:alert(1)>внутри</iframe>'
        "<b><i><u>незакрытые\u200b\u202e теги<textarea>скрытое</textarea><svg><text>svg</text></svg>"
        '<a href="javascript:alert(1)" class="post-reply-link" data-num="1;DROP TABLE">&gt;&gt;x</a>'
        "</div></div></span>хвост<!-- комментарий -->"
    )
    clean = clean_comment(html)
    assert clean.text == "привет незакрытые теги хвост"
    assert clean.parents == ()  # a reply link with no usable number gives no parent
    many = "".join(reply_link("b", 1, n) for n in range(1, 1001)) + "перекличка"
    assert len(clean_comment(many).parents) == 32


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("Бамп", "bump"),
        ("бамп годному треду!", "bump"),
        ("Bump", "bump"),
        ("сажа", "sage"),
        ("Сажа тебе за щеку", "sage"),
        ("бамп позора", None),
        ("Сажа - это не аргумент, анон", None),
        (")))", None),
        ("ап", "bump"),
    ],
)
def test_bump_sage_and_empty_posts(text, reason):
    assert unusable_reason(text) == reason


def test_board_names():
    assert parse_boards(" b, po ,b ") == ("b", "po")
    for bad in ("", "b/../x", "b?x=1"):
        with pytest.raises(ValueError):
            parse_boards(bad)


def test_written_fixture_threads_are_valid_2ch_json():
    data = json.loads(thread_json("b", [post(1, 1, "op"), post(2, 1, reply_link("b", 1, 1) + "да")]))
    assert [p.num for p in parse_thread(data, "b", 1).posts] == [1, 2]


def test_speaker_markers_and_special_token_strings_leave_training_text():
    cleaned = clean_comment("вот |1|2| так &lt;/s&gt; и &lt;|endoftext|&gt; всё <br>|0|-|ага")
    assert cleaned.text == "вот так и всё ага"
