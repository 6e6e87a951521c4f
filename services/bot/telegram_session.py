"""The bot's HTTP session to the Bot API: error accounting, bad updates, and 429s waited out.

- `BotSession` counts every failed call by code, and when a getUpdates answer does not parse
  because of one malformed update, drops that update instead of failing the whole batch (aiogram
  would otherwise ask for the same batch forever and the bot would stop answering).
- `RetryAfterMiddleware` waits out a 429's `retry_after` and retries the call once; it also blocks
  the chat's (or the global) send window for that long, so concurrent replies wait too, and the
  retry takes a slot of those windows like any send (else it would go out together with the reply
  that was waiting for the same chat).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import ClientDecodeError, TelegramAPIError, TelegramNetworkError, TelegramRetryAfter
from aiogram.methods import GetUpdates, SendChatAction, TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import Update
from pydantic import ValidationError

from services.bot import metrics
from services.bot.rate_limit import RateLimiter, Window

log = logging.getLogger(__name__)


def _method_name(method: TelegramMethod[Any]) -> str:
    return getattr(method, "__api_method__", type(method).__name__)


class BotSession(AiohttpSession):
    def check_response(
        self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int, content: str
    ) -> Response[TelegramType]:
        try:
            return super().check_response(bot, method, status_code, content)
        except ClientDecodeError:
            polling = isinstance(method, GetUpdates)  # a flag: narrowing `method` would lose its result type
            if polling and 200 <= status_code < 300:
                cleaned = self._drop_malformed_updates(bot, content)
                if cleaned is not None:
                    return super().check_response(bot, method, status_code, cleaned)
            metrics.TELEGRAM_ERRORS.labels(code="decode", method=_method_name(method)).inc()
            raise
        except TelegramAPIError:
            metrics.TELEGRAM_ERRORS.labels(code=str(status_code), method=_method_name(method)).inc()
            raise

    @staticmethod
    def _drop_malformed_updates(bot: Bot, content: str) -> str | None:
        """The getUpdates answer with each update that does not validate replaced by a bare
        `{"update_id": N}` (so the offset still moves past it), or None if it is not fixable."""
        try:
            data = json.loads(content)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            return None
        kept = []
        for raw in data["result"]:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                metrics.SKIPS.labels(reason="malformed_update").inc()
                continue
            try:
                Update.model_validate(raw, context={"bot": bot})
                kept.append(raw)
            except ValidationError as exc:
                metrics.SKIPS.labels(reason="malformed_update").inc()
                log.warning("malformed update dropped", extra={"update_id": update_id, "errors": exc.error_count()})
                kept.append({"update_id": update_id})
        data["result"] = kept
        return json.dumps(data)


class RetryAfterMiddleware(BaseRequestMiddleware):
    """Wait out a 429 and retry once; count network errors (timeouts) by kind."""

    def __init__(
        self,
        limiter: RateLimiter | None,
        max_retry_after_s: float,
        retry_windows: Callable[[Any], list[Window]] | None = None,
    ):
        self.limiter = limiter
        self.max_retry_after_s = max_retry_after_s
        self.retry_windows = retry_windows

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ):
        try:
            return await self._call(make_request, bot, method)
        except TelegramRetryAfter as exc:
            name = _method_name(method)
            chat_id = getattr(method, "chat_id", None)
            if self.limiter is not None and not isinstance(method, GetUpdates):
                # Everyone sending to this chat (or anywhere, for chat-less calls) holds off too.
                await self.limiter.block(f"chat:{chat_id}" if chat_id is not None else "global", exc.retry_after)
            if isinstance(method, SendChatAction) or exc.retry_after > self.max_retry_after_s:
                log.warning(
                    "telegram 429: not retried",
                    extra={"method": name, "retry_after": exc.retry_after, "max_retry_after_s": self.max_retry_after_s},
                )
                raise
            log.warning(
                "telegram 429: waiting and retrying once", extra={"method": name, "retry_after": exc.retry_after}
            )
            if self.limiter is not None and self.retry_windows is not None and not isinstance(method, GetUpdates):
                # Waits out the block set above, then reserves the retry's slot.
                if (
                    await self.limiter.acquire(self.retry_windows(chat_id), exc.retry_after + self.max_retry_after_s)
                    is None
                ):
                    log.warning("telegram 429: no send slot for the retry", extra={"method": name})
                    raise
            else:
                await asyncio.sleep(exc.retry_after)
            return await self._call(make_request, bot, method)

    @staticmethod
    async def _call(
        make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ):
        try:
            return await make_request(bot, method)
        except TelegramNetworkError as exc:
            code = "timeout" if "timeout" in exc.message.lower() else "network"
            metrics.TELEGRAM_ERRORS.labels(code=code, method=_method_name(method)).inc()
            raise
