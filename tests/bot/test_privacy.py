"""Where the bot answers and what it keeps, against the local Bot API server and the real bot,
Redis, Postgres and worker: the allow-list of groups (a group not listed is told once and left,
nothing of it stored), /privacy made from what is really kept, /learn, /forget, the retention."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
import redis
import redis.asyncio as aioredis

from services.bot import privacy, texts
from shared.db import Base, make_async_engine, migrate
from tests.bot.helpers import get_chat, make_lifecycle, set_chat
from tests.servers import create_database, drop_database

ADMIN_TOKEN = "admin-privacy-token-3f9a"


def _chat_keys(redis_url: str, bot_id: int, chat_id: int) -> list[bytes]:
    """Every Redis key of the bot that names the chat."""
    client = redis.Redis.from_url(redis_url)
    try:
        return sorted(k for k in client.scan_iter(match=f"dvach:bot:{bot_id}:*") if f":{chat_id}".encode() in k)
    finally:
        client.close()


def _wait_no_keys(redis_url: str, bot_id: int, chat_id: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while keys := _chat_keys(redis_url, bot_id, chat_id):
        assert time.monotonic() < deadline, f"keys of chat {chat_id} still there: {keys}"
        time.sleep(0.05)  # polling Redis, bounded by the deadline


def _rows(database_url: str, sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, list(args)).fetchall()


@pytest.fixture
def own_database() -> str:
    """A database of the test's own: an allow-list in the shared one would turn the shared bot
    away from every other test's groups."""
    url = create_database()
    migrate(url)
    yield url
    drop_database(url)


def test_group_not_on_the_allow_list_is_told_once_and_left_and_nothing_is_stored(
    start_bot, worker, own_database, redis_url, start_gateway
):
    allowed_group_id = -1_005_000_000_000 - time.time_ns() % 1_000_000
    basic_id = -4_100_000_000 - time.time_ns() % 1_000_000
    running = start_bot({"DATABASE_URL": own_database, "BOT_ALLOWED_CHATS": f"{allowed_group_id}, 42,{basic_id}"})
    tg, process = running.server, running.process
    basic = tg.basic_group(title="Своя обычная группа", chat_id=basic_id)
    user = tg.user()

    # Added to a group not on the list: says so once, leaves.
    stranger = tg.group(title="Чужая группа")
    tg.push({"my_chat_member": tg.member_update(stranger, "left", "member")})
    notice = tg.wait_sent(stranger["id"])[0]
    assert notice.text == texts.NOT_ALLOWED.format(chat_id=stranger["id"])
    left = tg.wait_for(
        lambda calls: [c for c in calls if c.method == "leaveChat" and c.chat_id == stranger["id"] and c.ok],
        what="leaveChat",
    )
    assert len(left) == 1
    process.wait_metric("dvach_bot_chats_left_total", 1)
    # A message sent before it left, delivered late: not answered, not stored.
    skipped = process.metric("dvach_bot_skips_total", reason="not_allowed")
    tg.push({"message": tg.message(stranger, user, "/ask ты кто", date=int(time.time()) - 5)})
    tg.push({"message": tg.message(stranger, user, "эй бот", mention=True, date=int(time.time()) - 5)})
    process.wait_metric("dvach_bot_skips_total", skipped + 2, reason="not_allowed")
    # Added again, even by a bot restarted meanwhile: it leaves without a second notice.
    process.stop()
    process.start()
    process.wait_ready()
    tg.rejoin(stranger)
    tg.push({"my_chat_member": tg.member_update(stranger, "left", "administrator")})
    tg.wait_for(
        lambda calls: len([c for c in calls if c.method == "leaveChat" and c.chat_id == stranger["id"] and c.ok]) == 2,
        what="a second leaveChat",
    )
    assert len(tg.sent(stranger["id"], ok=False)) == 1  # the one notice, nothing else tried
    # Nothing of it is stored: no settings row, no Redis key; of the refusal only the id and time.
    _wait_no_keys(redis_url, tg.bot_id, stranger["id"])
    assert get_chat(own_database, stranger["id"]) is None
    assert [r[0] for r in _rows(own_database, "SELECT chat_id FROM chat_refusals")] == [stranger["id"]]

    # The listed group, and private chats, are answered.
    allowed = tg.group(allowed_group_id, title="Своя группа")
    ask = tg.send_user_message(allowed, user, "/ask как дела")
    assert tg.wait_reply(allowed["id"], ask["message_id"]).text.strip()
    private = tg.private(user)
    hello = tg.send_user_message(private, user, "привет")
    assert tg.wait_reply(private["id"], hello["message_id"]).text.strip()

    # The admin API's list: the stranger allowed (while the bot is down, so that it starts with
    # the new list), the bot stays and answers there.
    gateway = start_gateway({"DATABASE_URL": own_database, "ADMIN_TOKEN": ADMIN_TOKEN})
    process.stop()
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        assert admin.get("/admin/allowlist").json() == []
        put = admin.put(f"/admin/allowlist/{stranger['id']}", json={"note": "передумали"})
        assert put.status_code == 200 and put.json()["note"] == "передумали"
        assert [c["chat_id"] for c in admin.get("/admin/allowlist").json()] == [stranger["id"]]
        assert admin.put("/admin/allowlist/12", json={"bogus": 1}).status_code == 422
        assert admin.delete("/admin/allowlist/777").status_code == 404
    assert _rows(own_database, "SELECT chat_id FROM chat_refusals") == []  # told again if taken off later
    process.start()
    process.wait_ready()
    tg.rejoin(stranger)
    ask = tg.send_user_message(stranger, user, "/ask теперь можно?")
    assert tg.wait_reply(stranger["id"], ask["message_id"]).text.strip()
    assert len([c for c in tg.calls if c.method == "leaveChat" and c.chat_id == stranger["id"] and c.ok]) == 2
    _listed_group_upgraded_stays(tg, process, own_database, basic, user)


def _listed_group_upgraded_stays(tg, process, database_url: str, basic: dict, user: dict) -> None:
    """A listed group that becomes a supergroup (a new id) stays listed, whichever announcement
    comes first; the new id is put on the table."""
    supergroup = tg.upgrade(basic)
    to_message, from_message = tg.migration_messages(basic, supergroup, user)
    tg.push({"message": from_message})
    tg.push({"message": to_message})
    process.wait_metric("dvach_bot_chat_migrations_total", 1)
    ask = tg.send_user_message(supergroup, user, "/ask а в супергруппе?")
    assert tg.wait_reply(supergroup["id"], ask["message_id"]).text.strip()
    assert not [c for c in tg.calls if c.method == "leaveChat" and c.chat_id == supergroup["id"]]
    listed = _rows(database_url, "SELECT chat_id FROM chat_allowlist WHERE chat_id = %s", supergroup["id"])
    assert listed == [(supergroup["id"],)]


def test_privacy_names_every_table_and_redis_key_kind_a_chat_has(bot, tg, database_url, redis_url):
    """/privacy is made from services/bot/privacy.py; that list covers every table with a chat id
    and every kind of Redis key a chat really gets (after a greeting, replies, commands)."""
    tables = {t.name for t in Base.metadata.sorted_tables if "chat_id" in t.c}
    assert tables == set(privacy.TABLES) | set(privacy.NOT_ABOUT_THIS_CHAT)
    group = tg.group()
    user = tg.user()
    set_chat(database_url, group["id"], reply_chance=1.0, cooldown_s=60, title=group["title"], chat_type="supergroup")
    tg.push({"my_chat_member": tg.member_update(group, "left", "member")})
    tg.wait_sent(group["id"])
    first = tg.send_user_message(group, user, "привет всем")  # a random reply (chance 1): the cooldown
    tg.wait_reply(group["id"], first["message_id"])
    ask = tg.send_user_message(group, user, "/privacy")
    text = tg.wait_reply(group["id"], ask["message_id"]).text
    prefix = f"dvach:bot:{tg.bot_id}:".encode()
    kinds = {k[len(prefix) :].split(b":")[0].decode() for k in _chat_keys(redis_url, tg.bot_id, group["id"])}
    assert {"ctx", "replied", "greeted", "cooldown", "rl", "recent"} <= kinds <= set(privacy.REDIS_KINDS)
    for kept in [*privacy.TABLES.values(), *privacy.REDIS_KINDS.values()]:
        assert kept.what in text
    assert "30 дн." in text and "/forget" in text and "/learn on" in text


def test_learn_keeps_the_text_only_when_an_admin_turned_it_on(bot, tg, database_url):
    group = tg.group()
    user, admin = tg.user(), tg.user()
    tg.set_member(group["id"], admin["id"], "administrator")
    refused = tg.send_user_message(group, user, "/learn on")
    assert tg.wait_reply(group["id"], refused["message_id"]).text == texts.ADMINS_ONLY
    before = tg.send_user_message(group, user, "/ask что скажешь")
    reply = tg.wait_reply(group["id"], before["message_id"])
    row = _wait_reply_row(database_url, group["id"], reply.result["message_id"])
    assert row["dialog"] is None and row["text"] is None  # learning is off by default
    assert row["job_id"] and row["model_version"] and row["tone"] == "normal"  # the chat's tone
    # The reranker's view of the reply it chose, out of the worker's interactive candidates.
    assert row["scores"]["candidates"] == 4 and row["scores"]["rule"] and "text" not in row["scores"]

    on = tg.send_user_message(group, admin, "/learn on")
    assert tg.wait_reply(group["id"], on["message_id"]).text == texts.LEARN_ON
    asked = tg.send_user_message(group, user, "/ask а теперь")
    reply = tg.wait_reply(group["id"], asked["message_id"])
    row = _wait_reply_row(database_url, group["id"], reply.result["message_id"])
    assert row["dialog"] == ["а теперь"] and row["text"] == reply.text

    # An anonymous admin (posting as the group) turns it off: not kept any more.
    off = tg.send_user_message(group, tg.user(1087968824, "Group", is_bot=True), "/learn off", sender_chat=group)
    assert tg.wait_reply(group["id"], off["message_id"]).text == texts.LEARN_OFF
    last = tg.send_user_message(group, user, "/ask и всё?")
    reply = tg.wait_reply(group["id"], last["message_id"])
    row = _wait_reply_row(database_url, group["id"], reply.result["message_id"])
    assert row["dialog"] is None and row["text"] is None


@pytest.mark.parametrize("where", ["group", "private"])
def test_forget_leaves_no_row_and_no_redis_key_of_the_chat(bot, tg, database_url, redis_url, where):
    user, admin = tg.user(), tg.user()
    chat = tg.group() if where == "group" else tg.private(user)
    speaker = admin if where == "group" else user
    tg.set_member(chat["id"], admin["id"], "administrator")
    on = tg.send_user_message(chat, speaker, "/learn on")
    assert tg.wait_reply(chat["id"], on["message_id"]).text == texts.LEARN_ON
    asked = tg.send_user_message(chat, user, "/ask запомни меня")
    reply = tg.wait_reply(chat["id"], asked["message_id"])
    _wait_reply_row(database_url, chat["id"], reply.result["message_id"])
    _react(database_url, chat["id"], reply.result["message_id"])
    assert _chat_keys(redis_url, tg.bot_id, chat["id"])
    if where == "group":  # not an admin: refused, nothing deleted
        no = tg.send_user_message(chat, user, "/forget")
        assert tg.wait_reply(chat["id"], no["message_id"]).text == texts.ADMINS_ONLY
        assert _count(database_url, chat["id"]) == (1, 1, 1)

    forget = tg.send_user_message(chat, speaker, "/forget")
    assert tg.wait_reply(chat["id"], forget["message_id"]).text == texts.FORGOTTEN
    assert _count(database_url, chat["id"]) == (0, 0, 0)
    _wait_no_keys(redis_url, tg.bot_id, chat["id"])


async def test_retention_deletes_old_reply_records_and_refusals(database_url, redis_url):
    """The cleanup on a clock: reply records (text, reactions) and refusals older than
    BOT_RETENTION_DAYS go, newer ones stay, whatever the chat's state."""
    engine = make_async_engine(database_url)
    client = aioredis.from_url(redis_url)
    lifecycle, _ = make_lifecycle(engine, client, database_url, redis_url, "retention")
    chat_id = -8_000_000_000 - time.time_ns() % 1_000_000_000
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for message_id, age_days in ((1, 31), (2, 29)):
            conn.execute(
                "INSERT INTO bot_replies (chat_id, message_id, job_id, model_version, dialog, text, created_at) "
                "VALUES (%s, %s, 'job', 'v1', '[\"эй\"]', 'ответ', %s)",
                [chat_id, message_id, now - timedelta(days=age_days)],
            )
        _react(database_url, chat_id, 1)
        _react(database_url, chat_id, 2)
        conn.execute("INSERT INTO chat_refusals VALUES (%s, %s)", [chat_id - 1, now - timedelta(days=31)])
        conn.execute("INSERT INTO chat_refusals VALUES (%s, %s)", [chat_id - 2, now - timedelta(days=1)])
    try:
        await lifecycle.purge(now)
    finally:
        await client.aclose()
        await engine.dispose()
    assert [r[0] for r in _rows(database_url, "SELECT message_id FROM bot_replies WHERE chat_id = %s", chat_id)] == [2]
    reacted = _rows(database_url, "SELECT message_id FROM reply_reactions WHERE chat_id = %s", chat_id)
    assert [r[0] for r in reacted] == [2]
    refusals = _rows(
        database_url, "SELECT chat_id FROM chat_refusals WHERE chat_id IN (%s, %s)", chat_id - 1, chat_id - 2
    )
    assert [r[0] for r in refusals] == [chat_id - 2]


def _react(database_url: str, chat_id: int, message_id: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO reply_reactions (chat_id, message_id, actor, kinds) VALUES (%s, %s, 'user:1', '{\"👍\": 1}')",
            [chat_id, message_id],
        )


def _count(database_url: str, chat_id: int) -> tuple[int, int, int]:
    return tuple(
        _rows(database_url, f"SELECT count(*) FROM {table} WHERE chat_id = %s", chat_id)[0][0]
        for table in ("chat_settings", "bot_replies", "reply_reactions")
    )  # type: ignore[return-value]


def _wait_reply_row(database_url: str, chat_id: int, message_id: int, timeout: float = 15) -> dict:
    columns = ("job_id", "model_version", "tone", "scores", "dialog", "text")
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(
            database_url,
            f"SELECT {', '.join(columns)} FROM bot_replies WHERE chat_id = %s AND message_id = %s",
            chat_id,
            message_id,
        )
        if rows:
            return dict(zip(columns, rows[0], strict=True))
        assert time.monotonic() < deadline, f"no bot_replies row for {chat_id}/{message_id}"
        time.sleep(0.05)  # polling a row, bounded by the deadline
