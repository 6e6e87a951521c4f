"""The bot end to end: fake Bot API server -> `python -m services.bot` -> Redis -> Celery worker
with a tiny model -> back to the fake server. One shared bot; every test uses its own chats."""

from __future__ import annotations

import json
import time
from itertools import pairwise

import pytest
import redis

from services.bot import texts
from tests.bot.helpers import TaskEvents, get_chat, set_chat, wait_for_key, wait_for_list


def _skips(bot, reason: str) -> float:
    return bot.process.metric("dvach_bot_skips_total", reason=reason)


def test_startup_registers_commands_and_polls(bot, tg):
    methods = tg.methods()
    assert methods[:3] == ["getMe", "setMyCommands", "deleteWebhook"]
    assert "getUpdates" in methods
    commands = next(c for c in tg.calls if c.method == "setMyCommands").params["commands"]
    names = [c["command"] for c in commands]
    assert {"start", "help", "chance", "tone", "mute", "unmute", "ask", "settings"} <= set(names)
    assert all(any("а" <= ch <= "я" for ch in c["description"].lower()) for c in commands)  # Russian


def test_private_message_gets_an_answer(tg):
    user = tg.user()
    chat = tg.private(user)
    message = tg.send_user_message(chat, user, "привет анон, как жизнь")
    reply = tg.wait_reply(chat["id"], message["message_id"])
    assert reply.text.strip() and reply.text != texts.APOLOGY


def test_mention_in_group_is_answered_as_a_reply_with_typing(tg):
    group = tg.group()
    message = tg.send_user_message(group, tg.user(), "ну и что ты думаешь", mention=True)
    reply = tg.wait_reply(group["id"], message["message_id"])
    assert reply.params["reply_parameters"]["message_id"] == message["message_id"]
    typing = [c for c in tg.calls if c.method == "sendChatAction" and c.chat_id == group["id"]]
    assert typing and typing[0].params["action"] == "typing" and typing[0].at <= reply.at


def test_text_mention_and_caption_mention_are_answered(tg):
    group = tg.group()
    name = "Двачер"
    text_mention = tg.send_user_message(
        group,
        tg.user(),
        f"{name}, скажи",
        entities=[{"type": "text_mention", "offset": 0, "length": len(name), "user": tg.bot_user}],
    )
    photo = tg.send_user_message(
        group,
        tg.user(),
        None,
        photo=[{"file_id": "p1", "file_unique_id": "u1", "width": 10, "height": 10}],
        caption=f"зацени @{tg.username}",
        caption_entities=[{"type": "mention", "offset": 7, "length": len(tg.username) + 1}],
    )
    tg.wait_reply(group["id"], text_mention["message_id"])
    tg.wait_reply(group["id"], photo["message_id"])


def test_reply_to_the_bot_is_answered(tg):
    group = tg.group()
    first = tg.send_user_message(group, tg.user(), "эй бот", mention=True)
    bot_reply = tg.wait_reply(group["id"], first["message_id"])
    bot_message = tg.stored_message(group["id"], bot_reply.result["message_id"])
    answer = tg.send_user_message(group, tg.user(), "сам такой", reply_to=bot_message)
    tg.wait_reply(group["id"], answer["message_id"])


def test_chance_zero_is_silent_and_chance_one_answers(bot, tg, database_url):
    silent, chatty = tg.group(), tg.group()
    set_chat(database_url, silent["id"], reply_chance=0.0)
    set_chat(database_url, chatty["id"], reply_chance=1.0, cooldown_s=60)
    before = _skips(bot, "chance")
    tg.send_user_message(silent, tg.user(), "просто сообщение")
    bot.process.wait_metric("dvach_bot_skips_total", before + 1, reason="chance")
    answered = tg.send_user_message(chatty, tg.user(), "тоже просто сообщение")
    tg.wait_reply(chatty["id"], answered["message_id"])
    # The per-chat cooldown holds the next random reply back.
    cooldown = _skips(bot, "cooldown")
    tg.send_user_message(chatty, tg.user(), "и ещё одно")
    bot.process.wait_metric("dvach_bot_skips_total", cooldown + 1, reason="cooldown")
    # Silent chat: a later mention is answered, the plain message never was.
    mention = tg.send_user_message(silent, tg.user(), "а теперь ты", mention=True)
    tg.wait_reply(silent["id"], mention["message_id"])
    assert [c.reply_to for c in tg.sent(silent["id"])] == [mention["message_id"]]
    assert len(tg.sent(chatty["id"])) == 1


def test_chance_command_needs_an_admin_and_is_applied(bot, tg, database_url):
    group = tg.group()
    member, owner, admin = tg.user(), tg.user(), tg.user()
    tg.set_member(group["id"], owner["id"], "creator")
    tg.set_member(group["id"], admin["id"], "administrator")

    refused = tg.send_user_message(group, member, "/chance 1")
    reply = tg.wait_reply(group["id"], refused["message_id"])
    assert reply.text == texts.ADMINS_ONLY
    assert any(c.method == "getChatMember" and c.params["user_id"] == member["id"] for c in tg.calls)
    assert (get_chat(database_url, group["id"]) or {}).get("reply_chance", 0.1) == pytest.approx(0.1)

    accepted = tg.send_user_message(group, owner, "/chance 1")
    assert tg.wait_reply(group["id"], accepted["message_id"]).text == texts.CHANCE_SET.format(chance=1.0)
    stored = get_chat(database_url, group["id"])
    assert stored["reply_chance"] == 1.0 and stored["title"] == group["title"] and stored["chat_type"] == "supergroup"
    plain = tg.send_user_message(group, member, "обычное сообщение")
    tg.wait_reply(group["id"], plain["message_id"])  # chance 1 applied at once

    lowered = tg.send_user_message(group, admin, f"/chance@{tg.username} 0,25")
    assert tg.wait_reply(group["id"], lowered["message_id"]).text == texts.CHANCE_SET.format(chance=0.25)
    assert get_chat(database_url, group["id"])["reply_chance"] == 0.25

    usage = tg.send_user_message(group, member, "/chance много")
    assert tg.wait_reply(group["id"], usage["message_id"]).text == texts.CHANCE_USAGE.format(chance=0.25)


def test_tone_is_set_by_admins_and_jobs_carry_it_with_the_chats_recent_replies(bot, tg, redis_url, database_url):
    group = tg.group()
    member, admin = tg.user(), tg.user()
    tg.set_member(group["id"], admin["id"], "administrator")
    set_chat(database_url, group["id"], reply_chance=0.0)

    refused = tg.send_user_message(group, member, "/tone жёстко")
    assert tg.wait_reply(group["id"], refused["message_id"]).text == texts.ADMINS_ONLY
    usage = tg.send_user_message(group, member, "/tone громко")
    assert tg.wait_reply(group["id"], usage["message_id"]).text == texts.TONE_USAGE.format(tone="обычно")
    accepted = tg.send_user_message(group, admin, "/tone жестко")  # without ё too
    assert tg.wait_reply(group["id"], accepted["message_id"]).text == texts.TONE_SET.format(tone="жёстко")
    assert get_chat(database_url, group["id"])["tone"] == "sharp"
    shown = tg.send_user_message(group, member, "/settings")
    assert "тон: жёстко" in tg.wait_reply(group["id"], shown["message_id"]).text

    recent_key = f"dvach:bot:{tg.bot_id}:recent:{group['id']}"
    events = TaskEvents(redis_url).start()
    try:
        first = tg.send_user_message(group, member, "первый вопрос к боту", mention=True)
        first_reply = tg.wait_reply(group["id"], first["message_id"]).text
        assert events.wait_job("первый вопрос к боту")["tone"] == "sharp"
        assert wait_for_list(redis_url, recent_key, 1) == [first_reply]  # remembered once sent
        second = tg.send_user_message(group, member, "второй вопрос к боту", mention=True)
        tg.wait_reply(group["id"], second["message_id"])
        job = events.wait_job("второй вопрос к боту")
    finally:
        events.stop()
    assert job["tone"] == "sharp" and job["recent_replies"] == [first_reply]  # the bot's own last reply
    recent = wait_for_list(redis_url, recent_key, 2)
    assert len(recent) == 2 and recent[1] == first_reply and 0 < redis.Redis.from_url(redis_url).ttl(recent_key) <= 3600


def test_mute_ask_settings_unmute(bot, tg, database_url):
    group = tg.group()
    admin, user = tg.user(), tg.user()
    tg.set_member(group["id"], admin["id"], "administrator")
    mute = tg.send_user_message(group, admin, "/mute")
    assert tg.wait_reply(group["id"], mute["message_id"]).text == texts.MUTED
    assert get_chat(database_url, group["id"])["muted"] is True

    muted_skips = _skips(bot, "muted")
    ignored = tg.send_user_message(group, user, "ау", mention=True)
    bot.process.wait_metric("dvach_bot_skips_total", muted_skips + 1, reason="muted")

    ask = tg.send_user_message(group, user, "/ask как пройти в библиотеку")
    assert tg.wait_reply(group["id"], ask["message_id"]).text not in (texts.ASK_USAGE, texts.MUTED)
    empty_ask = tg.send_user_message(group, user, "/ask")
    assert tg.wait_reply(group["id"], empty_ask["message_id"]).text == texts.ASK_USAGE

    settings = tg.send_user_message(group, user, "/settings")
    shown = tg.wait_reply(group["id"], settings["message_id"]).text
    assert "молчу: да" in shown and "0.1" in shown

    refused = tg.send_user_message(group, user, "/unmute")
    assert tg.wait_reply(group["id"], refused["message_id"]).text == texts.ADMINS_ONLY
    unmute = tg.send_user_message(group, admin, "/unmute")
    assert tg.wait_reply(group["id"], unmute["message_id"]).text == texts.UNMUTED
    mention = tg.send_user_message(group, user, "а теперь?", mention=True)
    tg.wait_reply(group["id"], mention["message_id"])
    assert not any(c.reply_to == ignored["message_id"] for c in tg.sent(group["id"]))


def test_help_and_start(tg):
    user = tg.user()
    chat = tg.private(user)
    start = tg.send_user_message(chat, user, "/start")
    assert tg.wait_reply(chat["id"], start["message_id"]).text == texts.START
    help_ = tg.send_user_message(chat, user, "/help")
    shown = tg.wait_reply(chat["id"], help_["message_id"]).text
    assert "Group Privacy" in shown and f"@{tg.username}" in shown


def test_three_message_chain_reaches_the_worker_as_three_turns(bot, tg, redis_url, database_url):
    group = tg.group()
    set_chat(database_url, group["id"], reply_chance=0.0)
    events = TaskEvents(redis_url).start()
    try:
        key = f"dvach:bot:{tg.bot_id}:ctx:{group['id']}:"
        first = tg.send_user_message(group, tg.user(), "первое: коты лучше собак")
        wait_for_key(redis_url, key + str(first["message_id"]))  # the bot has read it (people type slower)
        second = tg.send_user_message(group, tg.user(), "второе: нет, собаки", reply_to=first)
        wait_for_key(redis_url, key + str(second["message_id"]))
        third = tg.send_user_message(group, tg.user(), "третье: рассуди нас", reply_to=second, mention=True)
        tg.wait_reply(group["id"], third["message_id"])
        dialog = events.wait_dialog("третье: рассуди нас")
    finally:
        events.stop()
    assert dialog == ["третье: рассуди нас", "второе: нет, собаки", "первое: коты лучше собак"]


def test_429_is_waited_out_and_retried_once(bot, tg):
    group = tg.group()
    tg.fail("sendMessage", chat_id=group["id"], error_code=429, retry_after=1)
    errors = bot.process.metric("dvach_bot_telegram_errors_total", code="429", method="sendMessage")
    message = tg.send_user_message(group, tg.user(), "ну давай", mention=True)
    tg.wait_reply(group["id"], message["message_id"])
    attempts = [c for c in tg.calls if c.method == "sendMessage" and c.chat_id == group["id"]]
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].answered_at >= 0.95
    assert bot.process.metric("dvach_bot_telegram_errors_total", code="429", method="sendMessage") == errors + 1


def test_500_and_timeouts_do_not_stop_the_bot(bot, tg):
    group = tg.group()
    # A server error whose text carries the token (a misbehaving proxy): it must not reach the logs.
    tg.fail(
        "sendMessage",
        chat_id=group["id"],
        error_code=500,
        description=f"Internal Server Error at /bot{tg.token}/sendMessage",
    )
    first = tg.send_user_message(group, tg.user(), "раз", mention=True)
    tg.wait_for(
        lambda calls: any(c.method == "sendMessage" and c.chat_id == group["id"] and c.status == 500 for c in calls)
    )
    bot.process.wait_metric("dvach_bot_telegram_errors_total", 1, code="500", method="sendMessage")
    # An answer slower than BOT_REQUEST_TIMEOUT_S (3 s): the bot gives up on it, is not stuck.
    tg.fail("sendMessage", chat_id=group["id"], error_code=None, delay_s=4.5)
    second = tg.send_user_message(group, tg.user(), "два", mention=True)
    bot.process.wait_metric("dvach_bot_telegram_errors_total", 1, code="timeout", method="sendMessage")
    third = tg.send_user_message(group, tg.user(), "три", mention=True)
    tg.wait_reply(group["id"], third["message_id"])
    # Neither failed send was retried (a retry could post twice); each message got one attempt.
    attempts = [c.reply_to for c in tg.calls if c.method == "sendMessage" and c.chat_id == group["id"]]
    assert attempts.count(first["message_id"]) == 1 and attempts.count(second["message_id"]) == 1


def test_getupdates_failures_are_survived(bot, tg):
    tg.fail("getUpdates", error_code=500, times=2)
    tg.fail("getUpdates", error_code=429, retry_after=1, times=1)
    user = tg.user()
    chat = tg.private(user)
    message = tg.send_user_message(chat, user, "ты тут?")
    tg.wait_reply(chat["id"], message["message_id"], timeout=60)
    assert bot.process.alive()


def test_redelivered_update_is_answered_once(bot, tg):
    group = tg.group()
    message = tg.send_user_message(group, tg.user(), "один раз", mention=True)
    tg.wait_reply(group["id"], message["message_id"])
    duplicates = _skips(bot, "duplicate")
    tg.redeliver({"update_id": _update_id_of(tg, group["id"], message["message_id"]), "message": message})
    bot.process.wait_metric("dvach_bot_skips_total", duplicates + 1, reason="duplicate")
    later = tg.send_user_message(group, tg.user(), "а это новое", mention=True)
    tg.wait_reply(group["id"], later["message_id"])
    assert [c.reply_to for c in tg.sent(group["id"])].count(message["message_id"]) == 1


def _update_id_of(tg, chat_id: int, message_id: int) -> int:
    for call in tg.calls:
        if call.method == "getUpdates" and call.result:
            for update in call.result:
                msg = update.get("message") or {}
                if msg.get("message_id") == message_id and msg.get("chat", {}).get("id") == chat_id:
                    return update["update_id"]
    raise AssertionError("update not found")


def test_flood_from_one_user_is_cut_and_others_still_answered(bot, tg):
    group = tg.group()
    flooder = tg.user()
    floods = _skips(bot, "user_flood")
    messages = [tg.send_user_message(group, flooder, f"флуд {i}", mention=True) for i in range(12)]
    bot.process.wait_metric("dvach_bot_skips_total", floods + 7, reason="user_flood")  # 5 a minute pass
    tg.wait_sent(group["id"], 5, timeout=60)
    other = tg.send_user_message(group, tg.user(), "а мне ответишь?", mention=True)
    tg.wait_reply(group["id"], other["message_id"], timeout=60)
    flood_replies = [c for c in tg.sent(group["id"]) if c.reply_to in {m["message_id"] for m in messages}]
    assert len(flood_replies) == 5


def test_malformed_and_odd_updates_do_not_stop_the_bot(bot, tg, database_url):
    group = tg.group()
    set_chat(database_url, group["id"], reply_chance=0.0)  # only mentions are answered: no random replies
    other_bot = tg.user(name="Другой бот", is_bot=True)
    malformed = _skips(bot, "malformed_update")
    unknown = _skips(bot, "unknown_update")
    tg.push_raw({"message": {"message_id": 1, "text": "нет чата и даты"}})
    tg.push_raw({"message": {"message_id": 2, "date": 0, "chat": {"id": group["id"]}, "text": "у чата нет типа"}})
    tg.push_raw({"message": "это вообще строка"})
    tg.push_raw({"brand_new_update_type": {"something": 1}})
    tg.push({"edited_message": tg.message(group, tg.user(), "исправил", mention=True, edit_date=int(time.time()))})
    tg.push({"channel_post": tg.message({"id": -1009, "type": "channel", "title": "Канал"}, tg.user(), "пост")})
    tg.send_user_message(group, other_bot, "я тоже бот", mention=True)
    tg.send_user_message(group, tg.user(), None, new_chat_members=[tg.user()])
    tg.send_user_message(
        group,
        tg.user(),
        None,
        sticker={
            "file_id": "s",
            "file_unique_id": "s",
            "type": "regular",
            "width": 1,
            "height": 1,
            "is_animated": False,
            "is_video": False,
        },
    )
    tg.send_user_message(group, tg.user(), "битые сущности", entities=[{"type": "mention", "offset": 500, "length": 9}])
    huge = tg.send_user_message(group, tg.user(), "я" * (4096 - len(tg.username) - 2), mention=True)
    odd_text = "\u200f\u202eשלום\u200b мир 👨\u200d👩\u200d👧 \ufeff\u2066كيف حالك\u2069 \ud83d"
    odd = tg.send_user_message(group, tg.user(), odd_text, mention=True)
    tg.wait_reply(group["id"], huge["message_id"], timeout=60)
    tg.wait_reply(group["id"], odd["message_id"], timeout=60)
    bot.process.wait_metric("dvach_bot_skips_total", malformed + 3, reason="malformed_update")
    bot.process.wait_metric("dvach_bot_skips_total", unknown + 1, reason="unknown_update")
    after = tg.send_user_message(group, tg.user(), "ты жив?", mention=True)
    tg.wait_reply(group["id"], after["message_id"])
    assert {c.reply_to for c in tg.sent(group["id"])} == {huge["message_id"], odd["message_id"], after["message_id"]}
    assert "Cause exception while process update" not in bot.process.log_text()


@pytest.mark.timeout(600)
def test_twenty_groups_at_once_every_mention_answered_within_limits(bot, tg):
    """20 groups x 10 messages (5 mentions, 5 plain at the default chance) pushed at once."""
    groups = [tg.group() for _ in range(20)]
    mentions: dict[int, list[int]] = {g["id"]: [] for g in groups}
    for i in range(10):
        for group in groups:
            message = tg.send_user_message(group, tg.user(), f"сообщение {i}", mention=i % 2 == 0)
            if i % 2 == 0:
                mentions[group["id"]].append(message["message_id"])

    def all_answered(calls):
        return all(set(ids) <= {c.reply_to for c in tg.sent(chat)} for chat, ids in mentions.items())

    # Bounded, generous: 200 messages through rate limits and one worker on a loaded 2-core CI box.
    tg.wait_for(all_answered, timeout=300, what="a reply to every mention")
    all_sends = []
    for chat_id, ids in mentions.items():
        sends = tg.sent(chat_id)
        replies_to = [c.reply_to for c in sends]
        assert all(replies_to.count(mid) == 1 for mid in ids)  # exactly once
        assert len(replies_to) == len(set(replies_to))  # no message answered twice
        assert len(sends) <= 5 + 1  # the mentions, at most one random reply (cooldown)
        times = sorted(c.at for c in sends)
        # Telegram's own view: a send's slot counts from when it was answered (rate_limit.py, restamp),
        # so arrivals in one chat are a whole second apart however late a send left (less Redis' ms).
        assert all(b - a >= 0.99 for a, b in pairwise(times)), "more than 1 message a second in one chat"
        assert all(sum(1 for t in times if start <= t < start + 60) <= 20 for start in times)
        all_sends += times
    all_sends.sort()
    assert all(sum(1 for t in all_sends if start <= t < start + 1.0) <= 30 for start in all_sends)


def test_metrics_are_exposed(bot):
    names = {name for name, _ in bot.process.metrics()}
    for expected in (
        "dvach_bot_updates_total",
        "dvach_bot_replies_sent_total",
        "dvach_bot_skips_total",
        "dvach_bot_update_to_reply_seconds_bucket",
        "dvach_bot_telegram_errors_total",
    ):
        assert expected in names
    assert bot.process.metric("dvach_bot_updates_total", type="message") > 0
    assert bot.process.metric("dvach_bot_replies_sent_total", kind="mention") > 0
    assert bot.process.metric("dvach_bot_update_to_reply_seconds_count", kind="mention") > 0
    per_chat = {
        dict(labels)["chat_id"] for name, labels in bot.process.metrics() if name == "dvach_bot_chat_replies_total"
    }
    assert per_chat and len(per_chat) <= 101  # each answered chat (up to 100), then "other"


def test_token_never_in_logs_errors_or_metrics(bot, tg):
    """Runs last: by now the bot has logged 429s, a 500 quoting the token, timeouts and bad updates."""
    secret_part = tg.token.split(":", 1)[1]
    log = bot.process.log_text()
    assert "telegram 429" in log and "reply not sent" in log  # the errors were logged...
    assert tg.token not in log and secret_part not in log  # ...without the token
    assert "<redacted" in log
    metrics_text = json.dumps([list(k) for k in bot.process.metrics()])
    assert secret_part not in metrics_text
