"""What every update goes through first: counted, de-duplicated by update id, time-stamped."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject, Update
from aiogram.types.update import UpdateTypeLookupError

from services.bot import metrics
from services.bot.dedupe import Claims


class IntakeMiddleware(BaseMiddleware):
    """Outer middleware of `dp.update`: puts `received_at` (monotonic seconds) into handler data."""

    def __init__(self, claims: Claims):
        self.claims = claims

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        received_at = time.monotonic()
        assert isinstance(event, Update)
        try:
            update_type = event.event_type
        except UpdateTypeLookupError:
            # A type newer than this aiogram (it has extra fields), or the bare id a malformed
            # update was reduced to (counted already when it was dropped).
            metrics.UPDATES.labels(type="unknown").inc()
            if event.model_extra:
                metrics.SKIPS.labels(reason="unknown_update").inc()
            return UNHANDLED
        metrics.UPDATES.labels(type=update_type).inc()
        if not await self.claims.claim_update(event.update_id):
            metrics.SKIPS.labels(reason="duplicate").inc()
            return UNHANDLED
        data["received_at"] = received_at
        return await handler(event, data)
