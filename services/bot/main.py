"""Wiring: settings -> checks -> Redis, Postgres, Bot API session -> dispatcher -> polling or webhook.

Configuration is read here, once; everything below receives what it needs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from aiogram import Bot, Dispatcher
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError
from aiogram.types import BotCommand, User
from aiohttp import web
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_before_delay, wait_exponential

from services.bot import metrics, texts
from services.bot.allowlist import AllowList
from services.bot.chat_lifecycle import ChatLifecycle
from services.bot.chat_settings import ChatSettingsRepo
from services.bot.context import ChainCache
from services.bot.dedupe import Claims
from services.bot.delivery import Delivery, per_second_windows
from services.bot.handlers import commands_router, lifecycle_router, messages_router, reactions_router
from services.bot.intake import AllowListMiddleware, ChatStateMiddleware, IntakeMiddleware
from services.bot.poll_lease import check_ttl, run_polling
from services.bot.rate_limit import RateLimiter
from services.bot.reactions import ReactionLog
from services.bot.reply_log import ReplyLog
from services.bot.responder import Responder
from services.bot.telegram_session import BotSession, RetryAfterMiddleware
from services.bot.typing_indicator import TypingIndicator
from services.bot.webhook import create_webhook_app
from shared.db import make_async_engine
from shared.embedded import backing_servers
from shared.generation_client import GenerationClient, blocking_redis
from shared.logging_setup import configure_from_settings
from shared.settings import BotSettings

log = logging.getLogger("services.bot")

# What BotFather hands out: the bot's numeric id, a colon, and a 35-character secret.
TOKEN_FORMAT = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{30,}$")
# Telegram's rule for setWebhook's secret_token.
SECRET_FORMAT = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
STARTUP_IDENTIFY_TIMEOUT_S = 60.0


class StartupError(Exception):
    """A configuration problem, told in one line (never with the secret in it)."""


def check_token(settings: BotSettings) -> str:
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value().strip():
        raise StartupError("TELEGRAM_BOT_TOKEN is not set: put the token BotFather gave you into the environment")
    token = settings.telegram_bot_token.get_secret_value().strip()
    if not TOKEN_FORMAT.match(token):
        raise StartupError(
            "TELEGRAM_BOT_TOKEN is malformed: expected <bot id>:<secret> as BotFather gives it "
            "(digits, a colon, 30+ letters, digits, '_' or '-')"
        )
    return token


def check_webhook(settings: BotSettings) -> str | None:
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


def _embedded_said(which: str, url: str, embedded: bool) -> None:
    if embedded and which == "redis":
        log.warning("REDIS_URL not set: using the embedded Redis (workers must use it too)", extra={"url": url})
    elif embedded:
        log.warning("DATABASE_URL not set: started an embedded PostgreSQL")


@contextmanager
def backing_services(settings: BotSettings) -> Iterator[BotSettings]:
    """`settings` with REDIS_URL and DATABASE_URL filled in: embedded servers where unset (the
    stack launcher sets both; this is for running the bot alone on a bare machine)."""
    with backing_servers(settings, on_ready=_embedded_said) as servers:
        yield settings.model_copy(update={"redis_url": servers.redis_url, "database_url": servers.database_url})


def _retry_getme(exc: BaseException) -> bool:
    """Telegram out of reach or failing is waited out; a refused token is not."""
    return isinstance(exc, TelegramAPIError) and not isinstance(exc, TelegramUnauthorizedError)


def _log_getme_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else None
    log.warning("getMe failed, retrying", extra={"error": type(error).__name__, "retry_in_s": wait})


async def identify(bot: Bot, timeout_s: float = STARTUP_IDENTIFY_TIMEOUT_S) -> User:
    """getMe, retried with exponential backoff while the Bot API cannot be reached, for at most
    `timeout_s`; a refused token, or no answer in time, is a StartupError."""
    retrying = AsyncRetrying(
        retry=retry_if_exception(_retry_getme),
        wait=wait_exponential(multiplier=0.5, max=5.0),
        stop=stop_before_delay(timeout_s),
        before_sleep=_log_getme_retry,
        reraise=True,
    )
    try:
        return await retrying(bot.me)
    except TelegramUnauthorizedError:
        raise StartupError(
            "Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized): check the token with BotFather"
        ) from None
    except TelegramAPIError as exc:
        raise StartupError(
            f"cannot reach the Bot API at TELEGRAM_API_URL: {type(exc).__name__}: {exc.message}"
        ) from None


async def set_commands(bot: Bot) -> None:
    try:
        await bot.set_my_commands([BotCommand(command=name, description=text) for name, text in texts.COMMANDS])
    except TelegramAPIError as exc:  # the menu is a convenience: run without it
        log.warning("setMyCommands failed", extra={"error": type(exc).__name__})


async def run(settings: BotSettings, token: str, webhook_secret: str | None) -> None:
    session = BotSession(
        api=TelegramAPIServer.from_base(settings.telegram_api_url), timeout=settings.bot_request_timeout_s
    )
    bot = Bot(token=token, session=session)
    redis = blocking_redis(
        settings.required_redis_url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=10
    )
    engine = make_async_engine(settings.required_database_url, pool_size=5, max_overflow=5, pool_timeout=10)
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
    chat_settings = ChatSettingsRepo(engine, settings.bot_settings_cache_s)
    allowlist = AllowList(engine, settings.bot_allowed_chats, settings.bot_settings_cache_s)
    lifecycle = ChatLifecycle(
        bot,
        chat_settings,
        redis,
        prefix=prefix,
        limiter_prefix=limiter.prefix,
        cache=cache,
        claims=claims,
        settings=settings,
        allowlist=allowlist,
    )
    delivery = Delivery(bot, limiter, claims, cache, settings, lifecycle=lifecycle)
    responder = Responder(
        client,
        delivery,
        typing=TypingIndicator(bot),
        limiter=limiter,
        redis=redis,
        prefix=prefix,
        settings=settings,
        replies=ReplyLog(engine),
    )
    dp = Dispatcher(
        settings=settings,
        responder=responder,
        delivery=delivery,
        chain_cache=cache,
        chat_settings=chat_settings,
        lifecycle=lifecycle,
        claims=claims,
        reactions=ReactionLog(engine),
    )
    dp.update.outer_middleware(IntakeMiddleware(claims))
    dp.update.outer_middleware(AllowListMiddleware(allowlist, lifecycle, delivery))
    dp.update.outer_middleware(ChatStateMiddleware(chat_settings, lifecycle))
    dp.include_routers(lifecycle_router, commands_router, messages_router, reactions_router)
    cleanup: asyncio.Task | None = None
    try:
        me = await identify(bot)
        await set_commands(bot)
        metrics.serve(settings.bot_metrics_host, settings.bot_metrics_port)
        log.info("bot started", extra={"username": me.username, "bot_id": me.id, "mode": settings.bot_mode})
        cleanup = asyncio.create_task(lifecycle.run_cleanup(), name="chat-cleanup")
        if settings.bot_mode == "webhook":
            assert webhook_secret is not None
            await run_webhook(dp, bot, settings, webhook_secret, responder)
        else:
            await bot.delete_webhook(drop_pending_updates=False)
            await run_polling(dp, bot, redis, prefix + ":poll-lease", settings)  # one replica polls
            await responder.drain(settings.bot_shutdown_grace_s)
    finally:
        if cleanup is not None:
            cleanup.cancel()
        await client.close()
        await redis.aclose()
        await engine.dispose()
        await bot.session.close()
        log.info("bot stopped")


async def run_webhook(dp: Dispatcher, bot: Bot, settings: BotSettings, secret: str, responder: Responder) -> None:
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
        settings = BotSettings()
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
