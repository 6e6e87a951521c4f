"""What the bot keeps about a chat, where, and for how long: the one list `/privacy` is made from
(tests/bot/test_privacy.py checks that it names every table with a `chat_id` column and every kind
of Redis key a chat gets, so it cannot drift from what is really stored)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import BotSettings


@dataclass(frozen=True)
class Kept:
    what: str  # plain Russian
    how_long: str  # plain Russian; {days}, {context_h}, {dedupe_h}, {info_min}, {recent_h}: from the settings


# Tables, by name. Deleted by /forget (the chat's rows) and by the cleanup after BOT_RETENTION_DAYS.
TABLES: dict[str, Kept] = {
    "chat_settings": Kept(
        "настройки чата: шанс случайного ответа, тон, молчу ли я, включено ли обучение; название и тип чата",
        "пока я в чате; если меня удалили или заблокировали — ещё {days} дн.",
    ),
    "bot_replies": Kept(
        "мои ответы: номер сообщения, какая модель ответила, с каким тоном и оценками ответ выбран, "
        "сколько и каких реакций на нём; "
        "только если включено /learn — текст ответа и сообщений, на которые я отвечал",
        "{days} дн.",
    ),
    "reply_reactions": Kept("реакции на мои ответы: кто (номер пользователя) и какие", "{days} дн., вместе с ответом"),
}
# Tables with a chat id that hold nothing about a chat the bot is in (so /privacy does not list them).
NOT_ABOUT_THIS_CHAT: dict[str, str] = {
    "chat_allowlist": "the owner's list of groups the bot may answer in (the owner's decision, kept until changed)",
    "chat_refusals": "groups the bot left because they are not on the allow-list (only the id and the time)",
}
# Redis keys (`dvach:bot:<bot id>:<kind>:...`), by kind. They expire by themselves, and /forget and
# the cleanup delete them.
REDIS_KINDS: dict[str, Kept] = {
    "ctx": Kept("последние сообщения чата (текст и на что отвечают), чтобы понимать контекст", "{context_h} ч."),
    "replied": Kept("номера сообщений, на которые я уже ответил (чтобы не ответить дважды)", "{dedupe_h} ч."),
    "greeted": Kept("отметка, что я уже поздоровался в группе", "{dedupe_h} ч."),
    "recent": Kept("мои последние ответы в чате (чтобы не повторяться)", "{recent_h} ч."),
    "cooldown": Kept("пауза между случайными ответами", "до минуты"),
    "rl": Kept("счётчики отправленных сообщений для лимитов Telegram", "до минуты"),
    "chatinfo": Kept("задержка медленного режима группы", "{info_min} мин."),
}


def privacy_text(settings: BotSettings) -> str:
    """The /privacy answer: every item kept, and for how long, from the lists above."""
    values = {
        "days": f"{settings.bot_retention_days:g}",
        "context_h": f"{settings.bot_context_ttl_s / 3600:g}",
        "dedupe_h": f"{settings.bot_dedupe_ttl_s / 3600:g}",
        "info_min": f"{settings.bot_chat_info_cache_s / 60:g}",
        "recent_h": f"{settings.bot_recent_replies_ttl_s / 3600:g}",
    }
    lines = ["Что я храню об этом чате и сколько:"]
    for kept in [*TABLES.values(), *REDIS_KINDS.values()]:
        lines.append(f"• {kept.what} — {kept.how_long.format(**values)}")
    lines += [
        "",
        "Сообщения чата для обучения модели я сохраняю, только если админ включил /learn on "
        "(в личке — ты сам); выключить: /learn off.",
        "/forget — удалить всё это сразу (в группе — только админы).",
        "Больше я ничего не храню: ни сообщений вне контекста, ни номеров телефонов, ни файлов.",
    ]
    return "\n".join(lines)
