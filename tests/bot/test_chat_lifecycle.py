"""A chat's life against the local Bot API server and the real bot, Redis, Postgres and worker:
upgraded to a supergroup, the bot added, kicked or blocked, slow mode; and the retention cleanup."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from services.bot import texts
from shared.db import make_async_engine
from tests.bot.helpers import TaskEvents, get_chat, make_lifecycle, set_chat, wait_chat

ADMIN_TOKEN = "admin-lifecycle-token-7c1e"


def _prefix(tg) -> str:
    return f"dvach:bot:{tg.bot_id}"


def _keys(redis_url: str, pattern: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return sorted(client.scan_iter(match=pattern))
    finally:
        client.close()


def _gauge(base_url: str, name: str, **labels: str) -> float | None:
    text = httpx.get(base_url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_group_upgraded_mid_conversation_keeps_its_settings_and_gets_the_reply(
    bot, tg, database_url, redis_url, start_gateway
):
    """Service messages first, then the migrate error on send: chance and mute move to the new id,
    the late message's reply goes there once, the context follows, the admin API lists the new id
    only."""
    migrations = bot.process.metric("dvach_bot_chat_migrations_total")
    user = tg.user()
    group = tg.basic_group()
    set_chat(database_url, group["id"], reply_chance=0.3, muted=True, title=group["title"], chat_type="group")
    first = tg.send_user_message(group, user, "/ask как дела в группе")
    tg.wait_reply(group["id"], first["message_id"])  # the conversation so far, in the old group
    # Sent just before the upgrade, delivered after it.
    late = tg.message(group, user, "/ask а теперь что", date=int(time.time()) - 5)

    supergroup = tg.upgrade(group)
    to_message, from_message = tg.migration_messages(group, supergroup, user)
    tg.push({"message": to_message})
    tg.push({"message": from_message})
    bot.process.wait_metric("dvach_bot_chat_migrations_total", migrations + 1)
    tg.push({"message": late})

    reply = tg.wait_sent(supergroup["id"])[0]
    assert reply.text.strip()
    refused = [c for c in tg.calls if c.method == "sendMessage" and c.chat_id == group["id"] and c.status == 400]
    assert len(refused) == 1  # the late reply went to the old id, then once to the new one
    assert len([c for c in tg.sent(supergroup["id"])]) == 1

    new_row = get_chat(database_url, supergroup["id"])
    old_row = get_chat(database_url, group["id"])
    assert new_row is not None and old_row is not None
    assert (new_row["reply_chance"], new_row["muted"], new_row["state"]) == (0.3, True, "active")
    assert new_row["migrated_from"] == group["id"] and new_row["chat_type"] == "supergroup"
    assert (old_row["state"], old_row["migrated_to"]) == ("migrated", supergroup["id"])
    # The context cache moved with the chat: the first exchange is remembered under the new id.
    prefix = _prefix(tg)
    assert _keys(redis_url, f"{prefix}:ctx:{group['id']}:*") == []
    assert f"{prefix}:ctx:{supergroup['id']}:{first['message_id']}".encode() in _keys(
        redis_url, f"{prefix}:ctx:{supergroup['id']}:*"
    )

    # In the supergroup: still muted (a mention is not answered), /settings shows the moved chance.
    muted_before = bot.process.metric("dvach_bot_skips_total", reason="muted")
    tg.send_user_message(supergroup, user, "ты тут?", mention=True)
    bot.process.wait_metric("dvach_bot_skips_total", muted_before + 1, reason="muted")
    ask = tg.send_user_message(supergroup, user, "/settings")
    shown = tg.wait_reply(supergroup["id"], ask["message_id"]).text
    assert "0.3" in shown and f"молчу: {texts.YES}" in shown

    gateway = start_gateway({"ADMIN_TOKEN": ADMIN_TOKEN})
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        listed = {c["chat_id"]: c for c in admin.get("/admin/chats", params={"limit": 1000}).json()}
        assert supergroup["id"] in listed and group["id"] not in listed
        assert listed[supergroup["id"]]["migrated_from"] == group["id"]
        assert listed[supergroup["id"]]["muted"] is True
        old = admin.get(f"/admin/chats/{group['id']}")
        assert old.status_code == 404 and str(supergroup["id"]) in old.json()["detail"]
        pointers = {c["chat_id"] for c in admin.get("/admin/chats", params={"state": "migrated"}).json()}
        assert group["id"] in pointers
    deadline = time.monotonic() + 30
    while (_gauge(gateway.base_url, "dvach_chats", state="migrated") or 0) < 1:  # its first refresh
        assert time.monotonic() < deadline, "dvach_chats{state=migrated} did not count the group"
        time.sleep(0.1)  # polling a gauge, bounded by the deadline


def test_group_upgraded_unannounced_moves_on_the_migrate_error(bot, tg, database_url):
    """No service message seen yet: the migrate error alone moves the group; its service messages,
    arriving later, move nothing again."""
    migrations = bot.process.metric("dvach_bot_chat_migrations_total")
    user = tg.user()
    other = tg.basic_group()
    set_chat(database_url, other["id"], reply_chance=0.2, title=other["title"], chat_type="group")
    other_super = tg.upgrade(other)
    tg.send_user_message(other, user, "/ask а у вас что")
    tg.wait_sent(other_super["id"])
    assert wait_chat(database_url, other_super["id"], state="active")["reply_chance"] == 0.2
    assert bot.process.metric("dvach_bot_chat_migrations_total") == migrations + 1
    # Its service messages, arriving later, move nothing again.
    to_message, from_message = tg.migration_messages(other, other_super, user)
    updates = bot.process.metric("dvach_bot_updates_total", type="message")
    tg.push({"message": to_message})
    tg.push({"message": from_message})
    bot.process.wait_metric("dvach_bot_updates_total", updates + 2, type="message")
    assert bot.process.metric("dvach_bot_chat_migrations_total") == migrations + 1


def test_added_to_a_group_greets_once_and_tells_about_privacy_mode(bot, tg, database_url):
    group = tg.group()
    added = bot.process.metric("dvach_bot_membership_updates_total", change="added")
    tg.push({"my_chat_member": tg.member_update(group, "left", "member")})
    greeting = tg.wait_sent(group["id"])[0]
    assert greeting.text.startswith("Привет") and "/help" in greeting.text and "/chance" in greeting.text
    assert "@BotFather" in greeting.text and "/setprivacy" in greeting.text  # privacy mode is on
    assert greeting.params.get("reply_parameters") is None
    assert wait_chat(database_url, group["id"], state="active")["state_reason"] == "added"
    # Added again (or the update delivered twice): no second greeting.
    tg.push({"my_chat_member": tg.member_update(group, "left", "member")})
    bot.process.wait_metric("dvach_bot_membership_updates_total", added + 2, change="added")
    assert len(tg.sent(group["id"])) == 1

    # Added as an admin: it sees every message, privacy mode or not, and says so.
    admin_group = tg.group()
    tg.push({"my_chat_member": tg.member_update(admin_group, "left", "administrator")})
    text = tg.wait_sent(admin_group["id"])[0].text
    assert texts.GREETING_SEES_ALL in text and "@BotFather" not in text


def test_kicked_chat_gets_no_job_and_goes_after_retention(bot, tg, database_url, redis_url):
    group = tg.group()
    user = tg.user()
    first = tg.send_user_message(group, user, "привет бот", mention=True)
    tg.wait_reply(group["id"], first["message_id"])
    stale = tg.message(group, user, "ты ещё тут", mention=True, date=int(time.time()) - 30)
    removals = bot.process.metric("dvach_bot_chat_removals_total", reason="kicked")

    tg.kick(group)
    tg.push({"my_chat_member": tg.member_update(group, "member", "kicked")})
    bot.process.wait_metric("dvach_bot_chat_removals_total", removals + 1, reason="kicked")
    assert wait_chat(database_url, group["id"], state="inactive")["state_reason"] == "kicked"

    events = TaskEvents(redis_url).start()
    try:
        skipped = bot.process.metric("dvach_bot_skips_total", reason="inactive")
        tg.push({"message": stale})  # sent before the kick, delivered after it
        bot.process.wait_metric("dvach_bot_skips_total", skipped + 1, reason="inactive")
        assert not any(d and d[0].startswith("ты ещё тут") for d in events.received_dialogs())
    finally:
        events.stop()
    assert [c for c in tg.sent(group["id"]) if c.reply_to == stale["message_id"]] == []
    prefix = _prefix(tg)
    assert _keys(redis_url, f"{prefix}:ctx:{group['id']}:*")  # kept until the retention ends
    assert get_chat(database_url, group["id"]) is not None


def _chat_ids(count: int) -> list[int]:
    base = -7_000_000_000 - time.time_ns() % 1_000_000_000
    return [base - i for i in range(count)]


async def test_migration_moves_row_and_keys_once(database_url, redis_url):
    """Everything of the old id moves (TTLs kept, rate windows merged with the new id's), the old
    row becomes a pointer, and a second announcement moves nothing."""
    engine = make_async_engine(database_url)
    client = aioredis.from_url(redis_url)
    lifecycle, prefix = make_lifecycle(engine, client, database_url, redis_url, "lifecycle")
    repo = lifecycle.repo
    old, new = _chat_ids(2)
    try:
        await repo.update(old, title="Группа", chat_type="group", reply_chance=0.4, muted=True)
        await repo.register(new, "Группа", "supergroup")  # seen before the announcement: defaults
        await lifecycle.cache.remember(old, 7, "старое", None)
        await lifecycle.claims.claim_reply(old, 7)
        await client.zadd(f"{prefix}:rl:group:{old}", {"a": 1})
        await client.zadd(f"{prefix}:rl:group:{new}", {"b": 2})
        await client.pexpire(f"{prefix}:rl:group:{old}", 60_000)
        await client.set(f"{prefix}:chatinfo:{old}", 30)

        assert await lifecycle.migrate(old, new, "Группа") is True
        assert await lifecycle.migrate(old, new, "Группа") is False
        moved = await repo.get(new)
        assert (moved.reply_chance, moved.muted, moved.state) == (0.4, True, "active")
        pointer = await repo.get(old)
        assert (pointer.state, pointer.migrated_to) == ("migrated", new)
        assert await client.get(f"{prefix}:ctx:{new}:7") is not None
        assert 0 < await client.ttl(f"{prefix}:ctx:{new}:7") <= 3600
        assert await lifecycle.claims.claim_reply(new, 7) is False  # answered already, under the new id
        assert await client.zrange(f"{prefix}:rl:group:{new}", 0, -1) == [b"a", b"b"]
        assert [k async for k in client.scan_iter(match=f"{prefix}:*{old}*")] == []
    finally:
        await client.aclose()
        await engine.dispose()


async def test_cleanup_deletes_chats_past_the_retention_only(database_url, redis_url):
    """The cleanup job on a clock: a chat inactive for less than BOT_RETENTION_DAYS keeps its row
    and Redis keys, one inactive longer loses both; an active chat is never touched."""
    engine = make_async_engine(database_url)
    client = aioredis.from_url(redis_url)
    lifecycle, prefix = make_lifecycle(engine, client, database_url, redis_url, "lifecycle")
    repo, cache, claims = lifecycle.repo, lifecycle.cache, lifecycle.claims
    gone, active = _chat_ids(2)
    try:
        for chat_id in (gone, active):
            await repo.register(chat_id, "Группа", "supergroup")
            await cache.remember(chat_id, 1, "привет", None)
            await claims.claim_reply(chat_id, 1)
            await client.set(f"{prefix}:rl:group:{chat_id}", "1")
        assert await lifecycle.deactivate(gone, "kicked", chat_type="supergroup") is True
        assert await lifecycle.deactivate(gone, "kicked", chat_type="supergroup") is False  # counted once

        now = datetime.now(UTC)
        assert gone not in await lifecycle.purge(now + timedelta(days=29))
        assert (await repo.get(gone)).state == "inactive"
        assert await client.exists(f"{prefix}:ctx:{gone}:1")

        purged = await lifecycle.purge(now + timedelta(days=31))
        assert gone in purged and active not in purged
        assert (await repo.get(gone)).state == "active"  # no row: a chat never seen
        assert [k async for k in client.scan_iter(match=f"{prefix}:*:{gone}*")] == []
        assert (await repo.get(active)).state == "active"
        assert await client.exists(f"{prefix}:ctx:{active}:1", f"{prefix}:rl:group:{active}") == 2
    finally:
        await client.aclose()
        await engine.dispose()


def test_blocked_in_private_counts_the_403_and_marks_the_chat_inactive(bot, tg, database_url):
    user = tg.user()
    chat = tg.private(user)
    forbidden = bot.process.metric("dvach_bot_chat_removals_total", reason="forbidden")
    blocked = bot.process.metric("dvach_bot_chat_removals_total", reason="blocked")
    errors = bot.process.metric("dvach_bot_telegram_errors_total", code="403", method="sendMessage")
    tg.block(chat)
    tg.send_user_message(chat, user, "ну ответь")
    bot.process.wait_metric("dvach_bot_chat_removals_total", forbidden + 1, reason="forbidden")
    assert bot.process.metric("dvach_bot_telegram_errors_total", code="403", method="sendMessage") == errors + 1
    assert wait_chat(database_url, chat["id"], state="inactive")["state_reason"] == "forbidden"

    # Telegram's my_chat_member about the block, arriving after: the chat is inactive already.
    changes = bot.process.metric("dvach_bot_membership_updates_total", change="blocked")
    tg.push({"my_chat_member": tg.member_update(chat, "member", "kicked", by=user)})
    bot.process.wait_metric("dvach_bot_membership_updates_total", changes + 1, change="blocked")
    assert bot.process.metric("dvach_bot_chat_removals_total", reason="blocked") == blocked
    assert bot.process.metric("dvach_bot_chat_removals_total", reason="forbidden") == forbidden + 1


def test_slow_mode_keeps_replies_apart_and_random_replies_yield(bot, tg, database_url):
    """Slow mode 10 s: the second mention waits for the slot, the random reply in between is
    dropped rather than taking it, and Telegram never has to refuse a send."""
    group = tg.group()
    set_chat(database_url, group["id"], reply_chance=1.0, cooldown_s=0, title=group["title"], chat_type="supergroup")
    tg.set_slow_mode(group, 10)
    first = tg.send_user_message(group, tg.user(), "первый", mention=True)
    tg.wait_reply(group["id"], first["message_id"])
    yielded = bot.process.metric("dvach_bot_skips_total", reason="rate_limited")
    chatter = tg.send_user_message(group, tg.user(), "просто болтаю")  # a random reply, chance 1
    second = tg.send_user_message(group, tg.user(), "второй", mention=True)
    bot.process.wait_metric("dvach_bot_skips_total", yielded + 1, reason="rate_limited")
    tg.wait_reply(group["id"], second["message_id"], timeout=60)

    sent = sorted(tg.sent(group["id"]), key=lambda c: c.at)
    assert [c.reply_to for c in sent] == [first["message_id"], second["message_id"]]
    assert all(c.reply_to != chatter["message_id"] for c in sent)
    assert sent[1].at - sent[0].at >= 10
    refused = [c for c in tg.calls if c.method == "sendMessage" and c.chat_id == group["id"] and c.status == 429]
    assert refused == []
    assert len([c for c in tg.calls if c.method == "getChat" and c.chat_id == group["id"]]) == 1  # cached
