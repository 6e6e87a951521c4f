"""What the model gets to read: the triggering message and the chain it replies to, newest first.

Telegram puts only one level of `reply_to_message` into an update, so the bot remembers every
message it sees (its cleaned text and what it replies to) in Redis for BOT_CONTEXT_TTL_S, and
follows longer chains through that cache. Its own replies are remembered too, so a user replying
to the bot continues the conversation.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiogram.types import Message
from redis.exceptions import RedisError

from services.bot.mentions import Entity, strip_mentions
from shared.prompt import clean_turn as plain_turn

log = logging.getLogger(__name__)

# Zero-width characters, bidi controls, soft hyphens and other C0/C1 controls: invisible noise
# for the model (and a way to hide a mention from naive matching).
_INVISIBLE = re.compile(
    "[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_SPACES = re.compile(r"\s+")
_COMMAND = re.compile(r"^/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?")


def clean_turn(text: str, max_chars: int) -> str:
    """One turn as the model should see it: visible characters only, whitespace collapsed (as in
    the training data), no speaker markers or special-token strings (a user's `|1|2|` or `</s>` is
    not a turn boundary), cut to `max_chars` at a word boundary when one is near."""
    # Lone surrogates (valid JSON, invalid UTF-8) would break Redis and the queue: replace them.
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = plain_turn(_SPACES.sub(" ", _INVISIBLE.sub("", text)))
    if len(text) > max_chars:
        cut = text[:max_chars]
        space = cut.rfind(" ")
        text = (cut[:space] if space > max_chars * 0.8 else cut).rstrip()
    return text


def entities_of(message: Message) -> list[Entity]:
    raw = message.entities if message.text is not None else message.caption_entities
    return [
        Entity(type=str(e.type), offset=e.offset, length=e.length, user_id=e.user.id if e.user else None)
        for e in raw or []
    ]


def text_of(message: Message) -> str:
    """The text of a message, or the caption of media; '' for stickers, service messages, ..."""
    return message.text if message.text is not None else (message.caption or "")


def message_turn(
    message: Message, bot_id: int, bot_username: str | None, max_chars: int, *, command: bool = False
) -> str:
    """The message's text without the bot's mentions (and without the leading command, for /ask)."""
    text = strip_mentions(text_of(message), entities_of(message), bot_id, bot_username)
    if command:
        text = _COMMAND.sub("", text.lstrip(), count=1)
    return clean_turn(text, max_chars)


@dataclass(frozen=True)
class CachedMessage:
    turn: str
    reply_to: int | None


class ChainCache:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_s: int, max_turns: int):
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_turns = max_turns

    def _key(self, chat_id: int, message_id: int) -> str:
        return f"{self.prefix}:ctx:{chat_id}:{message_id}"

    def chat_pattern(self, chat_id: int) -> str:
        """A SCAN pattern matching every message remembered for `chat_id`."""
        return f"{self.prefix}:ctx:{chat_id}:*"

    async def remember(
        self, chat_id: int, message_id: int, turn: str, reply_to: int | None, parent_turn: str | None = None
    ) -> None:
        """Remember a message; `parent_turn`, when given, is the text of `reply_to` as the update
        showed it (kept only if that message is not remembered already: its own parent is unknown)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(self._key(chat_id, message_id), json.dumps({"t": turn, "r": reply_to}), ex=self.ttl_s)
                if reply_to is not None and parent_turn is not None:
                    pipe.set(
                        self._key(chat_id, reply_to), json.dumps({"t": parent_turn, "r": None}), ex=self.ttl_s, nx=True
                    )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("context cache: could not remember a message", extra={"error": str(exc)})

    async def recall(self, chat_id: int, message_id: int) -> CachedMessage | None:
        try:
            raw = await self.redis.get(self._key(chat_id, message_id))
        except (RedisError, OSError) as exc:
            log.warning("context cache: could not read", extra={"error": str(exc)})
            return None
        if raw is None:
            return None
        data = json.loads(raw)
        return CachedMessage(turn=data.get("t", ""), reply_to=data.get("r"))

    async def dialog(self, chat_id: int, turn: str, parent_id: int | None, parent_turn: str | None) -> list[str]:
        """Turns newest first: `turn` (if not empty), then the replied-to message and its ancestors
        as far as the cache knows them, at most `max_turns` in all; empty turns are left out."""
        turns = [turn] if turn else []
        if parent_id is None:
            return turns
        cached = await self.recall(chat_id, parent_id)
        parent_text = parent_turn if parent_turn is not None else (cached.turn if cached else "")
        if parent_text:
            turns.append(parent_text)
        next_id = cached.reply_to if cached else None
        seen = {parent_id}
        while next_id is not None and len(turns) < self.max_turns and next_id not in seen:
            seen.add(next_id)
            entry = await self.recall(chat_id, next_id)
            if entry is None:
                break
            if entry.turn:
                turns.append(entry.turn)
            next_id = entry.reply_to
        return turns[: self.max_turns]
