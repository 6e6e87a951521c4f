"""Reactions on the bot's replies, against the local Bot API server and the real bot, Redis,
Postgres and worker: asked for in allowed_updates, stored per person, counted per reply (changes
and removals replace, anonymous counts add), counted in the bot's metrics by kind, and shown by
the admin API by chat and by model version."""

from __future__ import annotations

import time

import httpx
import psycopg

from tests.bot.helpers import set_chat

ADMIN_TOKEN = "admin-reactions-token-5d2c"


def _reply_counts(database_url: str, chat_id: int, message_id: int) -> tuple[dict, int, int] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT reactions, likes, dislikes FROM bot_replies WHERE chat_id = %s AND message_id = %s",
            [chat_id, message_id],
        ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def _wait_counts(database_url: str, chat_id: int, message_id: int, expected: dict, timeout: float = 15) -> tuple:
    deadline = time.monotonic() + timeout
    while True:
        counts = _reply_counts(database_url, chat_id, message_id)
        if counts is not None and counts[0] == expected:
            return counts
        assert time.monotonic() < deadline, f"reactions are {counts}, not {expected}"
        time.sleep(0.05)  # polling a row, bounded by the deadline


def test_reactions_on_a_bot_reply_are_counted_and_shown_by_the_admin_api(  # noqa: PLR0915 - one story, step by step
    bot, tg, database_url, start_gateway
):
    polls = [c for c in tg.calls if c.method == "getUpdates"]
    assert {"message_reaction", "message_reaction_count"} <= set(polls[-1].params["allowed_updates"])

    group = tg.group(title="Реакции")
    set_chat(database_url, group["id"], title="Реакции", chat_type="supergroup")
    alice, bob = tg.user(name="Алиса"), tg.user(name="Боб")
    asked = tg.send_user_message(group, alice, "/ask оцените меня")
    reply = tg.wait_reply(group["id"], asked["message_id"])
    reply_id = reply.result["message_id"]
    gateway = start_gateway({"ADMIN_TOKEN": ADMIN_TOKEN})
    admin = httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        models = admin.get("/admin/feedback/models")
        assert models.status_code == 200, models.text
        with psycopg.connect(database_url) as conn:
            version = conn.execute(
                "SELECT model_version FROM bot_replies WHERE chat_id = %s AND message_id = %s", [group["id"], reply_id]
            ).fetchone()[0]
        before = {m["model_version"]: m for m in admin.get("/admin/feedback/models").json()}[version]
        likes_added = bot.process.metric("dvach_bot_reactions_total", kind="👍", verdict="like", change="added")
        likes_removed = bot.process.metric("dvach_bot_reactions_total", kind="👍", verdict="like", change="removed")

        like, fire, dislike = tg.reaction("👍"), tg.reaction("🔥"), tg.reaction("👎")
        tg.push({"message_reaction": tg.reaction_update(group, reply_id, [], [like], user=alice)})
        tg.push({"message_reaction": tg.reaction_update(group, reply_id, [], [fire], user=bob)})
        _wait_counts(database_url, group["id"], reply_id, {"👍": 1, "🔥": 1})
        # Bob changes his mind; an anonymous admin laughs; three anonymous 👍; a custom emoji.
        tg.push({"message_reaction": tg.reaction_update(group, reply_id, [fire], [dislike], user=bob)})
        tg.push({"message_reaction": tg.reaction_update(group, reply_id, [], [tg.reaction("😁")], actor_chat=group)})
        tg.push({"message_reaction_count": tg.reaction_count_update(group, reply_id, [(like, 3)])})
        carol = tg.user(name="Кэрол")
        tg.push(
            {
                "message_reaction": tg.reaction_update(
                    group, reply_id, [], [tg.reaction(custom_emoji_id="5")], user=carol
                )
            }
        )
        _wait_counts(database_url, group["id"], reply_id, {"👍": 4, "👎": 1, "😁": 1, "custom": 1})
        # Alice takes her 👍 back.
        tg.push({"message_reaction": tg.reaction_update(group, reply_id, [like], [], user=alice)})
        counts = _wait_counts(database_url, group["id"], reply_id, {"👍": 3, "👎": 1, "😁": 1, "custom": 1})
        assert counts[1:] == (4, 1)  # likes: 👍 3 + 😁; dislikes: 👎

        # A reaction on a person's message is not stored.
        skipped = bot.process.metric("dvach_bot_skips_total", reason="reaction_not_on_reply")
        tg.push({"message_reaction": tg.reaction_update(group, asked["message_id"], [], [like], user=bob)})
        bot.process.wait_metric("dvach_bot_skips_total", skipped + 1, reason="reaction_not_on_reply")
        with psycopg.connect(database_url) as conn:
            actors = conn.execute(
                "SELECT actor FROM reply_reactions WHERE chat_id = %s ORDER BY actor", [group["id"]]
            ).fetchall()
        assert [a[0] for a in actors] == sorted(
            ["anonymous", f"chat:{group['id']}", f"user:{bob['id']}", f"user:{carol['id']}"]
        )

        # Metrics by kind: 👍 put on 4 times (Alice, three anonymous), taken off once.
        assert bot.process.metric("dvach_bot_reactions_total", kind="👍", verdict="like", change="added") == (
            likes_added + 4
        )
        assert bot.process.metric("dvach_bot_reactions_total", kind="👍", verdict="like", change="removed") == (
            likes_removed + 1
        )
        assert bot.process.metric("dvach_bot_reactions_total", kind="👎", verdict="dislike", change="added") >= 1

        chats = {c["chat_id"]: c for c in admin.get("/admin/feedback/chats", params={"limit": 1000}).json()}
        shown = chats[group["id"]]
        assert shown["title"] == "Реакции"
        assert (shown["replies"], shown["reacted"], shown["likes"], shown["dislikes"]) == (1, 1, 4, 1)
        assert shown["approval"] == 0.8
        assert shown["reactions"] == {"👍": 3, "👎": 1, "😁": 1, "custom": 1}
        after = {m["model_version"]: m for m in admin.get("/admin/feedback/models").json()}[version]
        assert (after["likes"] - before["likes"], after["dislikes"] - before["dislikes"]) == (4, 1)
        assert after["reacted"] == before["reacted"] + 1
        assert admin.get("/admin/feedback/chats", params={"limit": 0}).status_code == 422
    finally:
        admin.close()
