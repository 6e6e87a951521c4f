"""Commands: /start, /help, /chance, /tone, /mute, /unmute, /ask, /settings, and what is kept
about the chat: /privacy, /learn, /forget (texts in texts.py)."""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message

from services.bot import texts
from services.bot.chat_lifecycle import ChatLifecycle
from services.bot.chat_settings import ChatSettingsRepo, SettingsUnavailable
from services.bot.context import ChainCache, message_turn
from services.bot.delivery import Delivery
from services.bot.policy import parse_chance, parse_tone
from services.bot.privacy import privacy_text
from services.bot.responder import Responder
from shared.settings import BotSettings

log = logging.getLogger(__name__)

commands_router = Router(name="commands")
ADMIN_STATUSES = frozenset({"creator", "administrator"})


def from_person(message: Message) -> bool:
    """People only, not other bots (an anonymous admin posts as the group itself: a person too)."""
    if message.sender_chat is not None and message.sender_chat.id == message.chat.id:
        return True
    return message.from_user is not None and not message.from_user.is_bot


commands_router.message.filter(from_person)


async def is_chat_admin(bot: Bot, message: Message) -> bool | None:
    """Whether the sender may change the chat's settings (None: Telegram could not tell us)."""
    if message.chat.type == "private":
        return True
    if message.sender_chat is not None and message.sender_chat.id == message.chat.id:
        return True  # an anonymous admin
    if message.from_user is None:
        return False
    try:
        member = await bot.get_chat_member(message.chat.id, message.from_user.id)
    except TelegramAPIError as exc:
        log.warning("admin check failed", extra={"chat_id": message.chat.id, "error": type(exc).__name__})
        return None
    return member.status in ADMIN_STATUSES


async def _allowed(message: Message, responder: Responder) -> bool:
    return await responder.user_allowed(message.from_user.id if message.from_user else None)


async def _admin_or_refuse(message: Message, bot: Bot, delivery: Delivery, received_at: float | None) -> bool:
    admin = await is_chat_admin(bot, message)
    if admin:
        return True
    await delivery.answer(
        message, texts.ADMIN_CHECK_FAILED if admin is None else texts.ADMINS_ONLY, received_at=received_at
    )
    return False


@commands_router.message(CommandStart())
async def start_handler(
    message: Message, delivery: Delivery, responder: Responder, received_at: float | None = None
) -> None:
    """Greet the user and say what the bot does."""
    if await _allowed(message, responder):
        await delivery.answer(message, texts.START, received_at=received_at)


@commands_router.message(Command("help"))
async def help_handler(
    message: Message, bot: Bot, delivery: Delivery, responder: Responder, received_at: float | None = None
) -> None:
    """List the commands and explain group privacy mode."""
    if await _allowed(message, responder):
        me = await bot.me()
        await delivery.answer(message, texts.HELP.format(username=me.username or "bot"), received_at=received_at)


@commands_router.message(Command("settings"))
async def settings_handler(
    message: Message,
    delivery: Delivery,
    responder: Responder,
    chat_settings: ChatSettingsRepo,
    received_at: float | None = None,
) -> None:
    """Show the chat's settings."""
    if not await _allowed(message, responder):
        return
    config = await chat_settings.get(message.chat.id)
    text = texts.SETTINGS.format(
        chance=config.reply_chance,
        muted=texts.YES if config.muted else texts.NO,
        cooldown=config.cooldown_s,
        tone=texts.TONES[config.tone],
    )
    await delivery.answer(message, text, received_at=received_at)


@commands_router.message(Command("chance"))
async def chance_handler(
    message: Message,
    *,
    command: CommandObject,
    bot: Bot,
    delivery: Delivery,
    responder: Responder,
    chat_settings: ChatSettingsRepo,
    received_at: float | None = None,
) -> None:
    """Show or set (admins) the chance of a random reply in this chat."""
    if not await _allowed(message, responder):
        return
    chance = parse_chance(command.args)
    if chance is None:
        config = await chat_settings.get(message.chat.id)
        await delivery.answer(message, texts.CHANCE_USAGE.format(chance=config.reply_chance), received_at=received_at)
        return
    if not await _admin_or_refuse(message, bot, delivery, received_at):
        return
    try:
        config = await chat_settings.update(
            message.chat.id, title=message.chat.title, chat_type=message.chat.type, reply_chance=chance
        )
    except SettingsUnavailable:
        await delivery.answer(message, texts.SAVE_FAILED, received_at=received_at)
        return
    log.info("reply chance set", extra={"chat_id": message.chat.id, "reply_chance": config.reply_chance})
    await delivery.answer(message, texts.CHANCE_SET.format(chance=config.reply_chance), received_at=received_at)


async def _set_muted(
    message: Message,
    bot: Bot,
    delivery: Delivery,
    chat_settings: ChatSettingsRepo,
    *,
    muted: bool,
    received_at: float | None,
) -> None:
    if not await _admin_or_refuse(message, bot, delivery, received_at):
        return
    try:
        await chat_settings.update(message.chat.id, title=message.chat.title, chat_type=message.chat.type, muted=muted)
    except SettingsUnavailable:
        await delivery.answer(message, texts.SAVE_FAILED, received_at=received_at)
        return
    log.info("chat muted" if muted else "chat unmuted", extra={"chat_id": message.chat.id})
    await delivery.answer(message, texts.MUTED if muted else texts.UNMUTED, received_at=received_at)


@commands_router.message(Command("mute"))
async def mute_handler(
    message: Message,
    *,
    bot: Bot,
    delivery: Delivery,
    responder: Responder,
    chat_settings: ChatSettingsRepo,
    received_at: float | None = None,
) -> None:
    """Stop answering in this chat (admins)."""
    if await _allowed(message, responder):
        await _set_muted(message, bot, delivery, chat_settings, muted=True, received_at=received_at)


@commands_router.message(Command("unmute"))
async def unmute_handler(
    message: Message,
    *,
    bot: Bot,
    delivery: Delivery,
    responder: Responder,
    chat_settings: ChatSettingsRepo,
    received_at: float | None = None,
) -> None:
    """Answer in this chat again (admins)."""
    if await _allowed(message, responder):
        await _set_muted(message, bot, delivery, chat_settings, muted=False, received_at=received_at)


@commands_router.message(Command("ask"))
async def ask_handler(
    message: Message,
    *,
    bot: Bot,
    settings: BotSettings,
    delivery: Delivery,
    responder: Responder,
    chain_cache: ChainCache,
    chat_settings: ChatSettingsRepo,
    received_at: float | None = None,
) -> None:
    """Answer the text after the command (and the message it replies to), muted or not."""
    me = await bot.me()
    parent = message.reply_to_message
    max_chars = settings.bot_max_turn_chars
    turn = message_turn(message, me.id, me.username, max_chars, command=True)
    parent_turn = message_turn(parent, me.id, me.username, max_chars) if parent else None
    await chain_cache.remember(
        message.chat.id, message.message_id, turn, parent.message_id if parent else None, parent_turn
    )
    dialog = await chain_cache.dialog(message.chat.id, turn, parent.message_id if parent else None, parent_turn)
    if not dialog:
        if await _allowed(message, responder):
            await delivery.answer(message, texts.ASK_USAGE, received_at=received_at)
        return
    config = await chat_settings.get(message.chat.id)
    await responder.respond(message, "ask", dialog, received_at, learn=config.learn, tone=config.tone)


@commands_router.message(Command("tone"))
async def tone_handler(
    message: Message,
    *,
    command: CommandObject,
    bot: Bot,
    delivery: Delivery,
    responder: Responder,
    chat_settings: ChatSettingsRepo,
    received_at: float | None = None,
) -> None:
    """Show or set (admins) how sharp the chosen replies are: мягко, обычно, жёстко."""
    if not await _allowed(message, responder):
        return
    tone = parse_tone(command.args)
    if tone is None:
        config = await chat_settings.get(message.chat.id)
        await delivery.answer(message, texts.TONE_USAGE.format(tone=texts.TONES[config.tone]), received_at=received_at)
        return
    if not await _admin_or_refuse(message, bot, delivery, received_at):
        return
    try:
        config = await chat_settings.update(
            message.chat.id, title=message.chat.title, chat_type=message.chat.type, tone=tone
        )
    except SettingsUnavailable:
        await delivery.answer(message, texts.SAVE_FAILED, received_at=received_at)
        return
    log.info("tone set", extra={"chat_id": message.chat.id, "tone": config.tone})
    await delivery.answer(message, texts.TONE_SET.format(tone=texts.TONES[config.tone]), received_at=received_at)


@commands_router.message(Command("privacy"))
async def privacy_handler(
    message: Message, settings: BotSettings, delivery: Delivery, responder: Responder, received_at: float | None = None
) -> None:
    """Say what is kept about this chat, and for how long."""
    if await _allowed(message, responder):
        await delivery.answer(message, privacy_text(settings), received_at=received_at)


LEARN_ARGS = {"on": True, "off": False, "вкл": True, "выкл": False}


@commands_router.message(Command("learn"))
async def learn_handler(
    message: Message,
    *,
    command: CommandObject,
    bot: Bot,
    delivery: Delivery,
    responder: Responder,
    chat_settings: ChatSettingsRepo,
    received_at: float | None = None,
) -> None:
    """Show, or turn on / off (admins; in private the user), keeping this chat's text for training."""
    if not await _allowed(message, responder):
        return
    learn = LEARN_ARGS.get((command.args or "").strip().lower())
    if learn is None:
        config = await chat_settings.get(message.chat.id)
        state = "включено" if config.learn else "выключено"
        await delivery.answer(message, texts.LEARN_STATE.format(state=state), received_at=received_at)
        return
    if not await _admin_or_refuse(message, bot, delivery, received_at):
        return
    try:
        await chat_settings.update(message.chat.id, title=message.chat.title, chat_type=message.chat.type, learn=learn)
    except SettingsUnavailable:
        await delivery.answer(message, texts.SAVE_FAILED, received_at=received_at)
        return
    log.info("learning turned " + ("on" if learn else "off"), extra={"chat_id": message.chat.id})
    await delivery.answer(message, texts.LEARN_ON if learn else texts.LEARN_OFF, received_at=received_at)


@commands_router.message(Command("forget"))
async def forget_handler(
    message: Message,
    *,
    bot: Bot,
    delivery: Delivery,
    responder: Responder,
    lifecycle: ChatLifecycle,
    received_at: float | None = None,
) -> None:
    """Delete everything kept about this chat at once (admins; in private the user): its rows, and
    its Redis keys after the confirmation (sending it makes some: a reply claim, rate windows)."""
    if not await _allowed(message, responder):
        return
    if not await _admin_or_refuse(message, bot, delivery, received_at):
        return
    private = message.chat.type == "private"
    try:
        await lifecycle.forget(message.chat.id, private=private)
    except SettingsUnavailable:
        await delivery.answer(message, texts.FORGET_FAILED, received_at=received_at)
        return
    await delivery.answer(message, texts.FORGOTTEN, received_at=received_at)
    await lifecycle.forget_keys(message.chat.id, private=private)
