"""Where the bot answers and what it keeps, against the local Bot API server and the real bot,
Redis, Postgres and worker: the allow-list of groups (a group not listed is told once and left,
nothing of it stored)."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest
import redis

from services.bot import texts
from shared.db import migrate
from tests.bot.helpers import get_chat
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
    running = start_bot({"DATABASE_URL": own_database, "BOT_ALLOWED_CHATS": f"{allowed_group_id}, 42"})
    tg, process = running.server, running.process
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
