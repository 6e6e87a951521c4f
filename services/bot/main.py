"""Wiring: settings -> checks -> Redis, Postgres, Bot API session -> dispatcher -> polling or webhook.

Configuration is read here, once; everything below receives what it needs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from aiogram import Bot, Dispatcher
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError
from aiogram.types import BotCommand, User
from aiohttp import web
from pydantic import ValidationError

from services.bot import metrics, texts
from services.bot.chat_settings import ChatSettingsRepo
from services.bot.context import ChainCache
from services.bot.dedupe import Claims
from services.bot.delivery import Delivery, per_second_windows
from services.bot.handlers import commands_router, messages_router
from services.bot.intake import IntakeMiddleware
from services.bot.poll_lease import check_ttl, run_polling
from services.bot.rate_limit import RateLimiter
from services.bot.responder import Responder
from services.bot.telegram_session import BotSession, RetryAfterMiddleware
from services.bot.typing_indicator import TypingIndicator
from services.bot.webhook import create_webhook_app
from shared.db import make_async_engine, migrate
from shared.generation_client import GenerationClient, blocking_redis
from shared.logging_setup import configure_from_settings
from shared.settings import Settings

log = logging.getLogger("services.bot")

# What BotFather hands out: the bot's numeric id, a colon, and a 35-character secret.
TOKEN_FORMAT = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{30,}$")
# Telegram's rule for setWebhook's secret_token.
SECRET_FORMAT = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
STARTUP_IDENTIFY_TIMEOUT_S = 60.0


class StartupError(Exception):
    """A configuration problem, told in one line (never with the secret in it)."""


def check_token(settings: Settings) -> str:
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value().strip():
        raise StartupError("TELEGRAM_BOT_TOKEN is not set: put the token BotFather gave you into the environment")
    token = settings.telegram_bot_token.get_secret_value().strip()
    if not TOKEN_FORMAT.match(token):
        raise StartupError(
            "TELEGRAM_BOT_TOKEN is malformed: expected <bot id>:<secret> as BotFather gives it "
            "(digits, a colon, 30+ letters, digits, '_' or '-')"
        )
    return token


def check_webhook(settings: Settings) -> str | None:
    if settings.bot_mode != "webhook":
        return None
    secret = settings.bot_webhook_secret.get_secret_value() if settings.bot_webhook_secret else ""
    if not SECRET_FORMAT.match(secret):
        raise StartupError(
            "BOT_WEBHOOK_SECRET must be set in webhook mode: 1-256 characters of A-Z, a-z, 0-9, '_' and '-'"
        )
    if not settings.bot_webhook_path.startswith("/"):
        raise StartupError("BOT_WEBHOOK_PATH must start with '/'")
    return secret


def _port_open(port: int) -> bool:
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextmanager
def backing_services(settings: Settings) -> Iterator[Settings]:
    """`settings` with REDIS_URL and DATABASE_URL filled in: embedded servers where unset (the
    stack launcher sets both; this is for running the bot alone on a bare machine)."""
    with ExitStack() as stack:
        updates: dict[str, str] = {}
        if not settings.redis_url:
            from shared.embedded import RedisServer

            port = getattr(settings, "embedded_redis_port", 6390)
            if not _port_open(port):
                server = RedisServer(settings.data_dir / "redis", port=port, persist=True).start()
                stack.callback(server.stop)
            updates["redis_url"] = f"redis://127.0.0.1:{port}/0"
            log.warning(
                "REDIS_URL not set: using the embedded Redis (workers must use it too)",
                extra={"url": updates["redis_url"]},
            )
        if not settings.database_url:
            from shared.embedded import EmbeddedPostgres

            postgres = EmbeddedPostgres(settings.data_dir / "postgres").start()
            stack.callback(postgres.stop)
            migrate(postgres.url)
            updates["database_url"] = postgres.url
            log.warning("DATABASE_URL not set: started an embedded PostgreSQL")
        yield settings.model_copy(update=updates)


async def identify(bot: Bot) -> User:
    """getMe, retried while Telegram cannot be reached; a refused token is a startup error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_IDENTIFY_TIMEOUT_S
    delay = 0.5
    while True:
        try:
            return await bot.me()
        except TelegramUnauthorizedError:
            raise StartupError(
                "Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized): check the token with BotFather"
            ) from None
        except TelegramAPIError as exc:
            if loop.time() + delay > deadline:
                raise StartupError(
                    f"cannot reach the Bot API at TELEGRAM_API_URL: {type(exc).__name__}: {exc.message}"
                ) from None
            log.warning("getMe failed, retrying", extra={"error": type(exc).__name__, "retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def set_commands(bot: Bot) -> None:
    try:
        await bot.set_my_commands([BotCommand(command=name, description=text) for name, text in texts.COMMANDS])
    except TelegramAPIError as exc:  # the menu is a convenience: run without it
        log.warning("setMyCommands failed", extra={"error": type(exc).__name__})


async def run(settings: Settings, token: str, webhook_secret: str | None) -> None:
    session = BotSession(
        api=TelegramAPIServer.from_base(settings.telegram_api_url), timeout=settings.bot_request_timeout_s
    )
    bot = Bot(token=token, session=session)
    redis = blocking_redis(settings.redis_url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=10)
    engine = make_async_engine(settings.database_url, pool_size=5, max_overflow=5, pool_timeout=10)
    client = GenerationClient(settings)
    prefix = f"dvach:bot:{bot.id}"  # per bot: two bots may share one Redis
    limiter = RateLimiter(redis, prefix + ":rl")
    session.middleware(
        RetryAfterMiddleware(
            limiter, settings.bot_max_retry_after_s, retry_windows=lambda chat_id: per_second_windows(settings, chat_id)
        )
    )
    claims = Claims(redis, prefix, settings.bot_dedupe_ttl_s)
    cache = ChainCache(redis, prefix, settings.bot_context_ttl_s, settings.bot_context_turns)
    delivery = Delivery(bot, limiter, claims, cache, settings)
    responder = Responder(client, delivery, TypingIndicator(bot), limiter, redis, prefix, settings)
    dp = Dispatcher(
        settings=settings,
        responder=responder,
        delivery=delivery,
        chain_cache=cache,
        chat_settings=ChatSettingsRepo(engine, settings.bot_settings_cache_s),
    )
    dp.update.outer_middleware(IntakeMiddleware(claims))
    dp.include_routers(commands_router, messages_router)
    try:
        me = await identify(bot)
        await set_commands(bot)
        metrics.serve(settings.bot_metrics_host, settings.bot_metrics_port)
        log.info("bot started", extra={"username": me.username, "bot_id": me.id, "mode": settings.bot_mode})
        if settings.bot_mode == "webhook":
            assert webhook_secret is not None
            await run_webhook(dp, bot, settings, webhook_secret, responder)
        else:
            await bot.delete_webhook(drop_pending_updates=False)
            await run_polling(dp, bot, redis, prefix + ":poll-lease", settings)  # one replica polls
            await responder.drain(settings.bot_shutdown_grace_s)
    finally:
        await client.close()
        await redis.aclose()
        await engine.dispose()
        await bot.session.close()
        log.info("bot stopped")


async def run_webhook(dp: Dispatcher, bot: Bot, settings: Settings, secret: str, responder: Responder) -> None:
    app, handler = create_webhook_app(dp, bot, secret, settings.bot_webhook_path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.bot_webhook_host, settings.bot_webhook_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings.bot_webhook_url:
        await bot.set_webhook(
            settings.bot_webhook_url,
            secret_token=secret,
            allowed_updates=dp.resolve_used_update_types(),
            drop_pending_updates=False,
        )
    log.info(
        "webhook server listening",
        extra={"host": settings.bot_webhook_host, "port": settings.bot_webhook_port, "path": settings.bot_webhook_path},
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if handler.tasks:
            await asyncio.wait(list(handler.tasks), timeout=settings.bot_shutdown_grace_s)
        await responder.drain(settings.bot_shutdown_grace_s)


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        sys.exit(f"services.bot: invalid settings: {problems}")
    configure_from_settings(settings)
    logging.captureWarnings(True)  # aiogram's warnings (unknown update types) as JSON log lines
    try:
        token = check_token(settings)
        secret = check_webhook(settings)
        if settings.bot_mode == "polling" and (
            problem := check_ttl(settings.bot_poll_lease_ttl_s, settings.bot_polling_timeout_s)
        ):
            raise StartupError(problem)
        with backing_services(settings) as resolved:
            asyncio.run(run(resolved, token, secret))
    except StartupError as exc:
        sys.exit(f"services.bot: {exc}")
    except KeyboardInterrupt:
        pass
