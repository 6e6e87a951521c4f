"""Small helpers of the bot suite: chat settings rows, Redis keys, Celery task events."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import psycopg
import redis

from shared.celery_app import create_celery_app
from shared.schemas import TASK_NAME
from shared.settings import QueueSettings


def set_chat(database_url: str, chat_id: int, **fields: Any) -> None:
    """Create or change a chat's settings row directly (as the gateway's admin API would)."""
    columns = ", ".join(["chat_id", *fields])
    placeholders = ", ".join(["%s"] * (len(fields) + 1))
    updates = ", ".join(f"{k} = EXCLUDED.{k}" for k in fields) or "chat_id = EXCLUDED.chat_id"
    with psycopg.connect(database_url, autocommit=True) as conn:
        upsert = f"INSERT INTO chat_settings ({columns}) VALUES ({placeholders}) ON CONFLICT (chat_id) DO UPDATE SET "
        conn.execute(upsert + updates, [chat_id, *fields.values()])


_CHAT_COLUMNS = (
    "reply_chance",
    "muted",
    "cooldown_s",
    "tone",
    "title",
    "chat_type",
    "state",
    "state_reason",
    "migrated_to",
    "migrated_from",
)


def get_chat(database_url: str, chat_id: int) -> dict | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f"SELECT {', '.join(_CHAT_COLUMNS)} FROM chat_settings WHERE chat_id = %s", [chat_id]
        ).fetchone()
    if row is None:
        return None
    return dict(zip(_CHAT_COLUMNS, row, strict=True))


def wait_chat(database_url: str, chat_id: int, timeout: float = 30, **expected: Any) -> dict:
    """Until the chat's row has the `expected` values (polling; bounded)."""
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        row = get_chat(database_url, chat_id)
        if row is not None and all(row[k] == v for k, v in expected.items()):
            return row
        time.sleep(0.05)  # polling a row, bounded by the deadline
    raise TimeoutError(f"chat {chat_id} is {row}, not {expected}, after {timeout}s")


def wait_for_list(redis_url: str, key: str, length: int, timeout: float = 15) -> list[str]:
    """Until the Redis list `key` holds `length` items (polling; bounded); its items."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            items = client.lrange(key, 0, -1)
            if len(items) >= length:
                return [item.decode() for item in items]
            time.sleep(0.05)  # polling a list, bounded by the deadline
    finally:
        client.close()
    raise TimeoutError(f"{key} did not reach {length} items in {timeout}s")


def wait_for_key(redis_url: str, key: str, timeout: float = 15) -> bytes:
    """Until `key` exists in Redis (polling; bounded)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            value = client.get(key)
            if value is not None:
                return value
            time.sleep(0.05)  # polling a key, bounded by the deadline
    finally:
        client.close()
    raise TimeoutError(f"{key} did not appear in {timeout}s")


class TaskEvents:
    """Celery's task events as the workers send them, captured in a thread.

    `task-received` carries the job's keyword arguments (as a repr), i.e. exactly what the worker
    got: `received_dialogs()` decodes the dialogs from them.
    """

    def __init__(self, redis_url: str):
        self.app = create_celery_app(QueueSettings(redis_url=redis_url))
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._receiver = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="task-events")

    def _on_event(self, event: dict) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def start(self, timeout: float = 15) -> TaskEvents:
        """Start capturing; returns once a probe event went through (so nothing is missed)."""
        self._thread.start()
        probe = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        with self.app.events.default_dispatcher() as dispatcher:
            while time.monotonic() < deadline:
                dispatcher.send("test-probe", probe=probe)
                with self._cond:
                    if self._cond.wait_for(lambda: any(e.get("probe") == probe for e in self.events), 0.3):
                        return self
        raise TimeoutError("the Celery event receiver did not start")

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(5)
        self.app.close()

    def received_dialogs(self) -> list[list[str]]:
        return [job["dialog"] for job in self.jobs()]

    def jobs(self) -> list[dict]:
        """The keyword arguments of every generation job received (the client sends them as JSON)."""
        with self._cond:
            events = [e for e in self.events if e.get("type") == "task-received" and e.get("name") == TASK_NAME]
        return [json.loads(e["kwargs"]) for e in events]

    def wait_job(self, newest: str, timeout: float = 30) -> dict:
        """The keyword arguments of the job whose newest turn is `newest`."""
        self.wait_dialog(newest, timeout)
        return next(job for job in self.jobs() if job["dialog"] and job["dialog"][0] == newest)

    def wait_dialog(self, newest: str, timeout: float = 30) -> list[str]:
        """The dialog of the job whose newest turn is `newest`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for dialog in self.received_dialogs():
                    if dialog and dialog[0] == newest:
                        return dialog
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no job with newest turn {newest!r}; got {self.received_dialogs()[-5:]}")
                self._cond.wait(remaining)


def make_lifecycle(engine, client, database_url: str, redis_url: str, label: str):
    """A ChatLifecycle of its own on the test servers (a unique key prefix; a bot that never sends),
    and that prefix."""
    from aiogram import Bot

    from services.bot.chat_lifecycle import ChatLifecycle
    from services.bot.chat_settings import ChatSettingsRepo
    from services.bot.context import ChainCache
    from services.bot.dedupe import Claims
    from shared.settings import BotSettings

    prefix = f"test:{label}:{time.time_ns()}"
    settings = BotSettings(redis_url=redis_url, database_url=database_url, bot_retention_days=30)
    lifecycle = ChatLifecycle(
        Bot("123456:" + "A" * 35),
        ChatSettingsRepo(engine, cache_s=0),
        client,
        prefix=prefix,
        limiter_prefix=prefix + ":rl",
        cache=ChainCache(client, prefix, 3600, 3),
        claims=Claims(client, prefix, 3600),
        settings=settings,
    )
    return lifecycle, prefix
