"""Webhook mode: an aiohttp server Telegram posts updates to (BOT_WEBHOOK_HOST:PORT + PATH).

Every request must carry the secret token given to setWebhook in `X-Telegram-Bot-Api-Secret-Token`;
a wrong or missing one gets 403 and is not looked at. Updates are answered with 200 at once and
handled in the background (Telegram waits for nobody); an update that does not validate is
counted and acknowledged, since Telegram would otherwise redeliver it forever.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

from services.bot import metrics

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookHandler:
    def __init__(self, dispatcher: Dispatcher, bot: Bot, secret: str):
        self.dispatcher = dispatcher
        self.bot = bot
        self._secret = secret.encode()
        self.tasks: set[asyncio.Task] = set()

    async def handle(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER)
        if given is None or not hmac.compare_digest(given.encode(), self._secret):
            log.warning("webhook call refused: wrong or missing secret token", extra={"remote": request.remote})
            return web.json_response({"ok": False, "description": "Forbidden"}, status=403)
        try:
            raw = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "description": "body is not JSON"}, status=400)
        try:
            update = Update.model_validate(raw, context={"bot": self.bot})
        except ValidationError as exc:
            metrics.SKIPS.labels(reason="malformed_update").inc()
            log.warning("malformed update acknowledged and dropped", extra={"errors": exc.error_count()})
            return web.json_response({})
        task = asyncio.create_task(self._feed(update))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response({})

    async def _feed(self, update: Update) -> None:
        try:
            await self.dispatcher.feed_update(self.bot, update)
        except Exception:
            log.exception("update handling failed", extra={"update_id": update.update_id})


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_webhook_app(
    dispatcher: Dispatcher, bot: Bot, secret: str, path: str
) -> tuple[web.Application, WebhookHandler]:
    handler = WebhookHandler(dispatcher, bot, secret)
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(path, handler.handle)
    app.router.add_get("/healthz", healthz)
    return app, handler
