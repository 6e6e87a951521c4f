""" "typing…" in a chat while replies for it are being made: one indicator per chat, however many.

`ChatActionSender.typing` refreshes the action every few seconds (Telegram shows it for about
five). Ten replies in flight in one group would otherwise send ten chat actions every interval;
here the first reply starts the chat's sender and the last one stops it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiogram import Bot
from aiogram.utils.chat_action import ChatActionSender

log = logging.getLogger(__name__)


class _QuietTyping(ChatActionSender):
    """A typing sender whose failures (429, network) end the indicator quietly: it is cosmetic."""

    async def _worker(self) -> None:
        try:
            await super()._worker()
        except Exception as exc:  # noqa: BLE001 - never let "typing" break or log a traceback
            log.debug("typing indicator stopped", extra={"error": type(exc).__name__})


class TypingIndicator:
    def __init__(self, bot: Bot, interval_s: float = 4.0):
        self.bot = bot
        self.interval_s = interval_s
        self._active: dict[tuple[int, int | None], list] = {}  # key -> [sender, users]

    @asynccontextmanager
    async def typing(self, chat_id: int, thread_id: int | None = None) -> AsyncIterator[None]:
        key = (chat_id, thread_id)
        entry = self._active.get(key)
        started = entry is None
        if entry is None:
            sender = _QuietTyping.typing(
                chat_id=chat_id, bot=self.bot, message_thread_id=thread_id, interval=self.interval_s
            )
            entry = self._active[key] = [sender, 0]
        entry[1] += 1  # before any await: a concurrent exit must not stop a sender still wanted
        try:
            if started:
                await entry[0].__aenter__()
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                if self._active.get(key) is entry:
                    del self._active[key]
                await entry[0].__aexit__(None, None, None)
