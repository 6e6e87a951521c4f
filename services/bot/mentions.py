"""Finding and removing the bot's own mentions in a message's text.

Telegram gives entity offsets in UTF-16 code units, not Python characters: a text with emoji or
other astral characters before the mention would be cut in the wrong place if they were used as
string indices. Everything here converts through UTF-16 and tolerates entities that do not fit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Entity:
    """The part of a Telegram MessageEntity this module needs."""

    type: str
    offset: int
    length: int
    user_id: int | None = None


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def _from_utf16(data: bytes) -> str:
    return data.decode("utf-16-le", "replace")


def entity_text(text: str, entity: Entity) -> str | None:
    """The text an entity covers, or None when the entity does not fit into the text."""
    data = _utf16(text)
    start, end = entity.offset * 2, (entity.offset + entity.length) * 2
    if entity.offset < 0 or entity.length <= 0 or end > len(data):
        return None
    return _from_utf16(data[start:end])


def mention_spans(text: str, entities: Iterable[Entity], bot_id: int, bot_username: str | None) -> list[Entity]:
    """The entities that mention this bot: `@username` (any case) or a text_mention of its user id."""
    username = (bot_username or "").lower()
    found = []
    for entity in entities:
        if entity.type == "text_mention" and entity.user_id == bot_id:
            if entity_text(text, entity) is not None:
                found.append(entity)
        elif entity.type == "mention" and username:
            covered = entity_text(text, entity)
            if covered is not None and covered.lower() == "@" + username:
                found.append(entity)
    return found


def is_mentioned(text: str, entities: Iterable[Entity], bot_id: int, bot_username: str | None) -> bool:
    return bool(mention_spans(text, entities, bot_id, bot_username))


def strip_mentions(text: str, entities: Sequence[Entity], bot_id: int, bot_username: str | None) -> str:
    """`text` without the bot's mentions (by entity, and any leftover `@username` written plainly)."""
    spans = sorted(mention_spans(text, entities, bot_id, bot_username), key=lambda e: e.offset, reverse=True)
    data = _utf16(text)
    for entity in spans:  # right to left, so earlier offsets stay valid
        data = data[: entity.offset * 2] + data[(entity.offset + entity.length) * 2 :]
    text = _from_utf16(data)
    if bot_username:
        text = re.sub(r"(?<![\w@])@" + re.escape(bot_username) + r"\b", "", text, flags=re.IGNORECASE)
    return text
