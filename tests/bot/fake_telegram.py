"""A local HTTP server that speaks the Telegram Bot API wire format, for driving the real bot.

aiogram calls `POST {base}/bot{token}/{method}` with form fields (nested objects JSON-encoded);
the server answers `{"ok": true, "result": ...}` or `{"ok": false, "error_code": ..., "description":
..., "parameters": {"retry_after": N}}`, as Telegram does. getUpdates is real long polling: it
hands out queued updates with `update_id >= offset` (confirming the older ones), returns at once
when something is queued and `[]` after `timeout` seconds otherwise. One poller per token: a
getUpdates still waiting when another arrives ends with 409 Conflict, as on Telegram.

A chat's life is modelled as Telegram answers it: `upgrade` turns a group into a supergroup (every
call to the old id then fails with 400 "group chat was upgraded to a supergroup chat" and
`parameters.migrate_to_chat_id`; `migration_messages` are the two service messages); `block` /
`kick` make sends answer 403 (so does leaveChat, from then on) and `member_update` builds the
`my_chat_member` update (`reaction_update` and `reaction_count_update` the `message_reaction` and
`message_reaction_count` ones); getChat
answers a ChatFullInfo with the `slow_mode_delay` set by `set_slow_mode`, and a send to such a
chat sooner than the delay after the previous one gets 429 with `retry_after`.

Every call is recorded (method, decoded fields, arrival time, outcome); tests wait on the record
with bounded `wait_for(...)` instead of sleeping. Faults are scripted per method (and chat):
`fail(...)` answers errors (429 with retry_after, 500, ...) or delays the answer past the bot's
timeout. The server runs its own event loop in a thread, so sync and async tests can use it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from shared.embedded import free_port

T = TypeVar("T")

# Fields aiogram sends JSON-encoded (nested objects and arrays).
_JSON_FIELDS = {
    "reply_parameters",
    "reply_markup",
    "commands",
    "scope",
    "allowed_updates",
    "entities",
    "link_preview_options",
    "caption_entities",
}
_INT_FIELDS = {"chat_id", "user_id", "offset", "limit", "timeout", "message_thread_id", "message_id"}

_ids = itertools.count(1)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() at arrival
    status: int | None = None  # HTTP status answered (None while pending)
    result: Any = None
    answered_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> int | None:
        return self.params.get("chat_id")

    @property
    def reply_to(self) -> int | None:
        reply = self.params.get("reply_parameters") or {}
        return reply.get("message_id") or self.params.get("reply_to_message_id")

    @property
    def text(self) -> str:
        return self.params.get("text", "")


@dataclass
class Fault:
    method: str
    chat_id: int | None = None
    times: int = 1
    error_code: int | None = 429
    description: str | None = None
    retry_after: int | None = None
    delay_s: float = 0.0


@dataclass
class FakeTelegram:
    token: str
    bot_id: int
    username: str = "dvach_test_bot"
    host: str = "127.0.0.1"
    calls: list[Call] = field(default_factory=list)
    members: dict[tuple[int, int], str] = field(default_factory=dict)  # (chat, user) -> status

    def __post_init__(self) -> None:
        self.port = free_port()
        self._cond = threading.Condition()
        self._updates: list[dict] = []  # not yet confirmed
        self._redeliver: list[dict] = []  # handed out once more, whatever the offset
        self._next_update_id = 1000
        self._faults: list[Fault] = []
        self._messages: dict[tuple[int, int], dict] = {}
        self._message_ids: dict[int, itertools.count] = {}
        self._chats: dict[int, dict] = {}
        self._migrated: dict[int, int] = {}  # old group id -> supergroup id
        self._forbidden: dict[int, str] = {}  # chat id -> the 403's description
        self._slow_mode: dict[int, int] = {}  # chat id -> slow_mode_delay
        self._last_sent: dict[int, float] = {}  # chat id -> monotonic time of the last message sent
        self.can_read_all_group_messages = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._polls = 0  # getUpdates requests so far: the newest is the poller
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def bot_user(self) -> dict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Двачер",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": self.can_read_all_group_messages,
            "supports_inline_queries": False,
        }

    def start(self) -> FakeTelegram:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), name="fake-telegram", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fake Telegram server did not start")
        return self

    def _serve(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._wake = asyncio.Event()
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, self.host, self.port).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # --- what tests do -------------------------------------------------------------------------
    def push(self, update: dict) -> dict:
        """Queue an update (an `update_id` is assigned unless given); returns it."""
        with self._cond:
            if "update_id" not in update:
                self._next_update_id += 1
                update = {"update_id": self._next_update_id, **update}
            update["_pushed_at"] = time.monotonic()
            self._updates.append(update)
        self._signal()
        return update

    def push_raw(self, update: dict) -> dict:
        """Queue an update exactly as given, with a fresh update_id (for malformed ones)."""
        with self._cond:
            self._next_update_id += 1
            update = {"update_id": self._next_update_id, **update}
            self._updates.append(update)
        self._signal()
        return update

    def redeliver(self, update: dict) -> None:
        """Hand an already confirmed update out once more (what Telegram does after a crash)."""
        with self._cond:
            self._redeliver.append(update)
        self._signal()

    def fail(
        self,
        method: str,
        *,
        chat_id: int | None = None,
        times: int = 1,
        error_code: int | None = 429,
        retry_after: int | None = None,
        description: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Script the next `times` calls of `method` (to `chat_id`) to fail / be delayed."""
        with self._cond:
            self._faults.append(Fault(method, chat_id, times, error_code, description, retry_after, delay_s))

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        with self._cond:
            self.members[(chat_id, user_id)] = status

    # --- a chat's life ------------------------------------------------------------------------
    def upgrade(self, group: dict, new_id: int | None = None) -> dict:
        """The group becomes a supergroup (a new id); calls to the old id fail from now on."""
        supergroup = self.group(new_id, title=group.get("title", "Тестовая группа"))
        with self._cond:
            self._migrated[group["id"]] = supergroup["id"]
        return supergroup

    def migration_messages(self, group: dict, supergroup: dict, user: dict) -> tuple[dict, dict]:
        """The service messages Telegram sends on an upgrade: in the old group (`migrate_to_chat_id`)
        and in the new supergroup (`migrate_from_chat_id`)."""
        return (
            self.message(group, user, migrate_to_chat_id=supergroup["id"]),
            self.message(supergroup, user, migrate_from_chat_id=group["id"]),
        )

    def member_update(self, chat: dict, old_status: str, new_status: str, by: dict | None = None) -> dict:
        """A `my_chat_member` update: the bot's status in `chat` changed from `old_status` to `new_status`."""
        bot = {k: self.bot_user[k] for k in ("id", "is_bot", "first_name", "username")}

        def member(status: str) -> dict:
            data: dict[str, Any] = {"status": status, "user": bot}
            if status == "kicked":
                data["until_date"] = 0
            elif status == "administrator":
                data.update({k: False for k in _ADMIN_RIGHTS} | {"can_manage_chat": True})
            return data

        return {
            "chat": chat,
            "from": by or self.user(),
            "date": int(time.time()),
            "old_chat_member": member(old_status),
            "new_chat_member": member(new_status),
        }

    @staticmethod
    def reaction(emoji: str | None = None, custom_emoji_id: str | None = None) -> dict:
        """A ReactionType: an emoji, a custom emoji, or (neither given) a paid reaction."""
        if emoji is not None:
            return {"type": "emoji", "emoji": emoji}
        if custom_emoji_id is not None:
            return {"type": "custom_emoji", "custom_emoji_id": custom_emoji_id}
        return {"type": "paid"}

    def reaction_update(
        self,
        chat: dict,
        message_id: int,
        old: list[dict],
        new: list[dict],
        *,
        user: dict | None = None,
        actor_chat: dict | None = None,
    ) -> dict:
        """A `message_reaction` update (MessageReactionUpdated): `user`, or `actor_chat` for an
        anonymous admin or a channel, changed their reactions from `old` to `new`."""
        update: dict[str, Any] = {
            "chat": chat,
            "message_id": message_id,
            "date": int(time.time()),
            "old_reaction": old,
            "new_reaction": new,
        }
        if user is not None:
            update["user"] = user
        if actor_chat is not None:
            update["actor_chat"] = actor_chat
        return update

    def reaction_count_update(self, chat: dict, message_id: int, counts: list[tuple[dict, int]]) -> dict:
        """A `message_reaction_count` update (MessageReactionCountUpdated): the anonymous
        reactions' counts, as (ReactionType, total_count) pairs."""
        return {
            "chat": chat,
            "message_id": message_id,
            "date": int(time.time()),
            "reactions": [{"type": reaction, "total_count": count} for reaction, count in counts],
        }

    def block(self, chat: dict) -> None:
        """The user blocked the bot (private chat): sends answer 403."""
        with self._cond:
            self._forbidden[chat["id"]] = "Forbidden: bot was blocked by the user"

    def kick(self, chat: dict) -> None:
        """The bot was removed from the group: sends answer 403."""
        with self._cond:
            self._forbidden[chat["id"]] = f"Forbidden: bot was kicked from the {chat.get('type', 'group')} chat"

    def rejoin(self, chat: dict) -> None:
        """The bot was added back to the group it left or was kicked from: calls work again."""
        with self._cond:
            self._forbidden.pop(chat["id"], None)

    def set_slow_mode(self, chat: dict, delay_s: int) -> None:
        with self._cond:
            self._slow_mode[chat["id"]] = delay_s

    def _signal(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # --- building updates --------------------------------------------------------------------
    @staticmethod
    def user(user_id: int | None = None, name: str = "Анон", is_bot: bool = False) -> dict:
        return {"id": user_id or 10_000 + next(_ids), "is_bot": is_bot, "first_name": name}

    def group(self, chat_id: int | None = None, title: str = "Тестовая группа") -> dict:
        chat: dict[str, Any] = {"id": chat_id or -1_000_000_000_000 - next(_ids), "type": "supergroup", "title": title}
        self._chats[chat["id"]] = chat
        return chat

    def basic_group(self, title: str = "Обычная группа", chat_id: int | None = None) -> dict:
        """A (basic) group, the kind that becomes a supergroup with a new id."""
        chat: dict[str, Any] = {"id": chat_id or -4_000_000_000 - next(_ids), "type": "group", "title": title}
        self._chats[chat["id"]] = chat
        return chat

    def private(self, user: dict) -> dict:
        chat: dict[str, Any] = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        self._chats[chat["id"]] = chat
        return chat

    def _next_message_id(self, chat_id: int) -> int:
        with self._cond:
            counter = self._message_ids.setdefault(chat_id, itertools.count(1))
            return next(counter)

    def message(
        self,
        chat: dict,
        user: dict,
        text: str | None = None,
        *,
        reply_to: dict | None = None,
        mention: bool = False,
        entities: list[dict] | None = None,
        **extra: Any,
    ) -> dict:
        """A message dict as Telegram sends it; `mention=True` appends `@username` with its entity."""
        entities = list(entities or [])
        if mention:
            text = f"{text} @{self.username}" if text else f"@{self.username}"
            entities.append(
                {
                    "type": "mention",
                    "offset": utf16_len(text) - utf16_len(self.username) - 1,
                    "length": utf16_len(self.username) + 1,
                }
            )
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
        }
        if text is not None:
            message["text"] = text
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
        message.update(extra)
        with self._cond:
            self._messages[(chat["id"], message["message_id"])] = message
        return message

    def send_user_message(self, chat: dict, user: dict, text: str | None = None, **kw: Any) -> dict:
        """Build a message and queue it as an update; returns the message."""
        message = self.message(chat, user, text, **kw)
        self.push({"message": message})
        return message

    def stored_message(self, chat_id: int, message_id: int) -> dict:
        with self._cond:
            return self._messages[(chat_id, message_id)]

    # --- reading the record ------------------------------------------------------------------
    def wait_for(
        self, predicate: Callable[[list[Call]], T | None], timeout: float = 30.0, what: str = "condition"
    ) -> T:
        """The predicate's first truthy result over the calls so far, waiting for new calls."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self.calls)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    recent = [
                        (c.method, c.chat_id, c.status, c.text[:40]) for c in self.calls if c.method != "getUpdates"
                    ][-15:]
                    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; recent calls: {recent}")
                self._cond.wait(remaining)

    def sent(self, chat_id: int | None = None, ok: bool = True) -> list[Call]:
        """sendMessage calls (answered with success, unless ok=False), optionally to one chat."""
        with self._cond:
            return [
                c
                for c in self.calls
                if c.method == "sendMessage"
                and (chat_id is None or c.chat_id == chat_id)
                and (c.ok or not ok)
                and c.status is not None
            ]

    def wait_sent(self, chat_id: int, count: int = 1, timeout: float = 30.0) -> list[Call]:
        return self.wait_for(
            lambda calls: s if len(s := self.sent(chat_id)) >= count else None,
            timeout,
            f"{count} sendMessage to chat {chat_id}",
        )

    def wait_reply(self, chat_id: int, message_id: int, timeout: float = 30.0) -> Call:
        return self.wait_for(
            lambda calls: next((c for c in self.sent(chat_id) if c.reply_to == message_id), None),
            timeout,
            f"a reply to message {message_id} in chat {chat_id}",
        )

    def wait_call(self, method: str, timeout: float = 30.0, after: float = 0.0) -> Call:
        return self.wait_for(
            lambda calls: next(
                (c for c in calls if c.method == method and c.at >= after and c.status is not None), None
            ),
            timeout,
            f"a {method} call",
        )

    def methods(self) -> list[str]:
        with self._cond:
            return [c.method for c in self.calls]

    # --- the server side -----------------------------------------------------------------------
    def _record(self, call: Call) -> None:
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    def _answer(self, call: Call, status: int, body: dict) -> web.Response:
        with self._cond:
            call.status = status
            call.result = body.get("result")
            call.answered_at = time.monotonic()
            self._cond.notify_all()
        return web.json_response(body, status=status)

    def _take_fault(self, method: str, chat_id: int | None) -> Fault | None:
        with self._cond:
            for fault in self._faults:
                if fault.method == method and fault.times > 0 and (fault.chat_id is None or fault.chat_id == chat_id):
                    fault.times -= 1
                    return fault
        return None

    def _chat_refusal(self, method: str, chat_id: Any) -> dict | None:
        """What Telegram answers about the chat itself: migrated (400), forbidden (403), slow mode (429)."""
        if not isinstance(chat_id, int):
            return None
        with self._cond:
            if chat_id in self._migrated:
                return {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": self._migrated[chat_id]},
                }
            if chat_id in self._forbidden and method != "getMe":
                return {"ok": False, "error_code": 403, "description": self._forbidden[chat_id]}
            delay = self._slow_mode.get(chat_id, 0)
            last = self._last_sent.get(chat_id)
            if method == "sendMessage" and delay and last is not None:
                left = last + delay - time.monotonic()
                if left > 0:
                    return {
                        "ok": False,
                        "error_code": 429,
                        "description": f"Too Many Requests: retry after {math.ceil(left)}",
                        "parameters": {"retry_after": math.ceil(left)},
                    }
        return None

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return await request.json()
        form = await request.post()
        params: dict[str, Any] = {}
        for key, raw in form.items():
            if not isinstance(raw, str):
                continue
            value: Any = raw
            if key in _JSON_FIELDS:
                value = json.loads(raw)
            elif key in _INT_FIELDS:
                with suppress(ValueError):
                    value = int(raw)
            params[key] = value
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = Call(method, await self._params(request), time.monotonic())
        self._record(call)
        if request.match_info["token"] != self.token:
            return self._answer(call, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        fault = self._take_fault(method, call.chat_id)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.error_code is not None:
                body: dict[str, Any] = {
                    "ok": False,
                    "error_code": fault.error_code,
                    "description": fault.description or _DESCRIPTIONS.get(fault.error_code, "Error"),
                }
                if fault.retry_after is not None:
                    body["parameters"] = {"retry_after": fault.retry_after}
                    body["description"] = f"Too Many Requests: retry after {fault.retry_after}"
                return self._answer(call, fault.error_code, body)
        refused = self._chat_refusal(method, call.chat_id)
        if refused is not None:
            return self._answer(call, refused["error_code"], refused)
        handler = getattr(self, "_m_" + method, None)
        if handler is None:
            return self._answer(
                call, 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
            )
        try:
            result = await handler(call.params)
        except _ApiError as exc:
            return self._answer(call, exc.code, {"ok": False, "error_code": exc.code, "description": exc.description})
        return self._answer(call, 200, {"ok": True, "result": result})

    # --- Bot API methods -------------------------------------------------------------------------
    async def _m_getMe(self, params: dict) -> dict:
        return self.bot_user

    async def _m_getUpdates(self, params: dict) -> list[dict]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        # One poller per token: a newer getUpdates ends the one still waiting with 409, as Telegram does.
        self._polls += 1
        mine = self._polls
        assert self._wake is not None
        self._wake.set()
        while True:
            self._wake.clear()
            if self._polls != mine:
                raise _ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            with self._cond:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                batch = (self._redeliver + self._updates)[:limit]
                self._redeliver = []
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0:
                return [{k: v for k, v in u.items() if not k.startswith("_")} for u in batch]
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _m_sendMessage(self, params: dict) -> dict:
        chat_id = params["chat_id"]
        text = params.get("text", "")
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        chat = self._chats.get(
            chat_id, {"id": chat_id, "type": "supergroup" if chat_id < 0 else "private", "title": "?"}
        )
        message = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": {k: self.bot_user[k] for k in ("id", "is_bot", "first_name", "username")},
            "text": text,
        }
        reply_to = (params.get("reply_parameters") or {}).get("message_id") or params.get("reply_to_message_id")
        if reply_to is not None:
            with self._cond:
                parent = self._messages.get((chat_id, int(reply_to)))
            if parent is not None:
                message["reply_to_message"] = {k: v for k, v in parent.items() if k != "reply_to_message"}
        with self._cond:
            self._messages[(chat_id, message["message_id"])] = message
            self._last_sent[chat_id] = time.monotonic()
        return message

    async def _m_getChat(self, params: dict) -> dict:
        chat_id = params["chat_id"]
        with self._cond:
            chat = dict(self._chats.get(chat_id, {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}))
            delay = self._slow_mode.get(chat_id)
        info: dict[str, Any] = {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if delay:
            info["slow_mode_delay"] = delay
        return info

    async def _m_sendChatAction(self, params: dict) -> bool:
        return True

    async def _m_getChatMember(self, params: dict) -> dict:
        chat_id, user_id = params["chat_id"], params["user_id"]
        status = self.members.get((chat_id, user_id), "member")
        member: dict[str, Any] = {"status": status, "user": {"id": user_id, "is_bot": False, "first_name": "Анон"}}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update({k: False for k in _ADMIN_RIGHTS})
            member["can_manage_chat"] = True
        return member

    async def _m_leaveChat(self, params: dict) -> bool:
        """The bot leaves: from now on every call about the chat answers 403, as Telegram does."""
        chat_id = params["chat_id"]
        with self._cond:
            kind = self._chats.get(chat_id, {}).get("type", "supergroup")
            self._forbidden[chat_id] = f"Forbidden: bot is not a member of the {kind} chat"
        return True

    async def _m_setMyCommands(self, params: dict) -> bool:
        return True

    async def _m_deleteWebhook(self, params: dict) -> bool:
        return True

    async def _m_setWebhook(self, params: dict) -> bool:
        return True

    async def _m_getWebhookInfo(self, params: dict) -> dict:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": 0}


# The rights fields of ChatMemberAdministrator (all required in the Bot API).
_ADMIN_RIGHTS = (
    "can_be_edited",
    "is_anonymous",
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
)


class _ApiError(Exception):
    def __init__(self, code: int, description: str):
        self.code = code
        self.description = description


_DESCRIPTIONS = {
    400: "Bad Request",
    403: "Forbidden: bot was blocked by the user",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
