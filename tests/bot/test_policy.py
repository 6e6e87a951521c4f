"""When the bot answers, and what text it reads: pure functions, no servers."""

from __future__ import annotations

import pytest

from services.bot.context import clean_turn
from services.bot.delivery import clean_reply
from services.bot.mentions import Entity, entity_text, is_mentioned, strip_mentions
from services.bot.policy import ChatPolicy, MessageFacts, decide, parse_chance

BOT_ID = 777
USERNAME = "dvach_bot"


def facts(**kw) -> MessageFacts:
    base = dict(
        chat_type="supergroup",
        has_text=True,
        from_bot=False,
        is_command=False,
        mentions_bot=False,
        replies_to_bot=False,
    )
    return MessageFacts(**{**base, **kw})


OPEN = ChatPolicy(reply_chance=0.1, muted=False)


@pytest.mark.parametrize(
    ("kw", "chat", "roll", "expected"),
    [
        ({"chat_type": "private"}, OPEN, 0.99, (True, "private", None)),
        ({"mentions_bot": True}, OPEN, 0.99, (True, "mention", None)),
        ({"replies_to_bot": True}, OPEN, 0.99, (True, "reply", None)),
        ({}, OPEN, 0.05, (True, "random", None)),
        ({}, OPEN, 0.5, (False, None, "chance")),
        ({}, ChatPolicy(0.0, False), 0.0, (False, None, "chance")),
        ({}, ChatPolicy(1.0, False), 0.999999, (True, "random", None)),
        ({"mentions_bot": True}, ChatPolicy(1.0, True), 0.0, (False, None, "muted")),
        ({"chat_type": "private"}, ChatPolicy(1.0, True), 0.0, (False, None, "muted")),
        ({"from_bot": True, "mentions_bot": True}, OPEN, 0.0, (False, None, "bot_sender")),
        ({"is_automatic_forward": True}, OPEN, 0.0, (False, None, "bot_sender")),
        ({"has_text": False, "mentions_bot": True}, OPEN, 0.0, (False, None, "no_text")),
        ({"is_command": True, "mentions_bot": True}, OPEN, 0.0, (False, None, "command")),
        ({"chat_type": "channel"}, OPEN, 0.0, (False, None, "chat_type")),
    ],
)
def test_decide(kw, chat, roll, expected):
    decision = decide(facts(**kw), chat, roll)
    assert (decision.answer, decision.kind, decision.reason) == expected


def test_random_replies_go_to_the_bulk_queue():
    assert decide(facts(), OPEN, 0.0).priority == "bulk"
    assert decide(facts(mentions_bot=True), OPEN, 0.0).priority == "interactive"
    assert decide(facts(chat_type="private"), OPEN, 0.0).priority == "interactive"


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("0.3", 0.3),
        ("0,5", 0.5),
        ("1", 1.0),
        ("0", 0.0),
        ("30%", 0.3),
        (" 0.25 ", 0.25),
        ("1.5", None),
        ("-0.1", None),
        ("nan", None),
        ("abc", None),
        ("", None),
        (None, None),
        ("200%", None),
    ],
)
def test_parse_chance(arg, value):
    assert parse_chance(arg) == (pytest.approx(value) if value is not None else None)


def mention_entity(text: str, at: str) -> Entity:
    before = text[: text.index(at)]

    def utf16(s: str) -> int:
        return len(s.encode("utf-16-le")) // 2

    return Entity("mention", utf16(before), utf16(at))


def test_mention_after_emoji_uses_utf16_offsets():
    text = "😀👍🏽 эй @Dvach_Bot как дела"
    entity = mention_entity(text, "@Dvach_Bot")
    assert entity.offset != text.index("@")  # astral characters count twice in UTF-16
    assert entity_text(text, entity) == "@Dvach_Bot"
    assert is_mentioned(text, [entity], BOT_ID, USERNAME)  # case-insensitive
    assert strip_mentions(text, [entity], BOT_ID, USERNAME) == "😀👍🏽 эй  как дела"


def test_text_mention_of_the_bot_is_a_mention():
    text = "Двачер, скажи что-нибудь"
    entity = Entity("text_mention", 0, 6, user_id=BOT_ID)
    assert is_mentioned(text, [entity], BOT_ID, USERNAME)
    assert strip_mentions(text, [entity], BOT_ID, USERNAME) == ", скажи что-нибудь"
    assert not is_mentioned(text, [Entity("text_mention", 0, 6, user_id=BOT_ID + 1)], BOT_ID, USERNAME)


def test_other_mentions_and_broken_entities_are_not_the_bot():
    text = "@other_bot привет"
    assert not is_mentioned(text, [Entity("mention", 0, 10)], BOT_ID, USERNAME)
    assert not is_mentioned("@dvach_bot", [Entity("mention", 5, 100)], BOT_ID, USERNAME)  # out of range
    assert not is_mentioned("@dvach_bot", [Entity("mention", -1, 3)], BOT_ID, USERNAME)
    # No entity at all (a plain-text mention is not one for Telegram), but it is still stripped.
    assert not is_mentioned("@dvach_bot hi", [], BOT_ID, USERNAME)
    assert strip_mentions("@dvach_bot hi", [], BOT_ID, USERNAME).strip() == "hi"
    assert strip_mentions("mail@dvach_bot.ru", [], BOT_ID, USERNAME) == "mail@dvach_bot.ru"


def test_clean_turn_drops_invisible_characters_and_collapses_whitespace():
    text = "\u200bпри\u200dвет\u202e  анон\n\n\tкак\ufeff  дела\u0007"
    assert clean_turn(text, 100) == "привет анон как дела"
    assert clean_turn("שלום עולם  مرحبا", 100) == "שלום עולם مرحبا"  # RTL letters stay
    assert clean_turn("\ud800 сломанный суррогат", 100) == "\ufffd сломанный суррогат"
    assert clean_turn("   \u200b\u200c  ", 100) == ""


def test_clean_turn_cuts_long_turns_at_a_word():
    text = ("слово " * 1000).strip()
    cut = clean_turn(text, 100)
    assert len(cut) <= 100 and cut.endswith("слово")
    assert len(clean_turn("я" * 5000, 1000)) == 1000


def test_clean_reply():
    assert clean_reply("  ответ\x0fтут\x00 ") == "ответтут"
    assert len(clean_reply("я" * 5000)) == 4096


def test_clean_turn_removes_speaker_markers_and_special_token_strings():
    """A user's `|1|2|` or `</s>` is not a turn boundary for the model."""
    assert clean_turn("ну |1|2| и </s>вот<|endoftext|> <pad>", 100) == "ну и вот"
    assert clean_turn("|0||1|2|1|", 100) == "|0| 1|"  # what is left after a marker goes is checked again
    assert clean_turn("цена |5| рублей", 100) == "цена |5| рублей"  # not a marker
