"""Everything the bot says to users that is not generated (Russian), in one place."""

from __future__ import annotations

# (command, description) for setMyCommands, in the order the menu shows them.
COMMANDS = [
    ("ask", "ответить на текст: /ask <текст>"),
    ("chance", "шанс случайного ответа в чате: /chance 0..1"),
    ("mute", "замолчать в этом чате (только админы)"),
    ("unmute", "снова отвечать в этом чате (только админы)"),
    ("settings", "настройки этого чата"),
    ("help", "что я умею"),
    ("start", "начать"),
]

START = (
    "Привет, анон. Я отвечаю как завсегдатай /b/ с двача: коротко, странно, иногда грубо.\n"
    "В личке отвечаю на каждое сообщение. В группе — когда меня упоминают, отвечают на мои "
    "сообщения, и иногда просто так. Подробнее: /help"
)

HELP = (
    "Что я умею:\n"
    "/ask <текст> — ответить на текст (или на сообщение, на которое ты отвечаешь)\n"
    "/chance 0..1 — шанс случайного ответа в группе (сейчас: /settings)\n"
    "/mute, /unmute — замолчать / снова отвечать (в группах только админы)\n"
    "/settings — настройки этого чата\n\n"
    "В группе я отвечаю, когда меня упоминают (@{username}) или отвечают на мои сообщения, "
    "а на остальные — случайно, с шансом из /chance.\n"
    "Важно: по умолчанию у ботов в группах включён режим приватности, и я вижу только команды, "
    "упоминания и ответы мне. Чтобы я мог отвечать случайно, админ группы может выключить его: "
    "@BotFather → /mybots → бот → Bot Settings → Group Privacy → Turn off, а потом удалить меня "
    "из группы и добавить снова. Или просто сделайте меня админом группы.\n\n"
    "Тексты пишет нейросеть, обученная на тредах двача: не принимай близко к сердцу."
)

SETTINGS = (
    "Настройки чата:\nшанс случайного ответа: {chance:g}\nмолчу: {muted}\nпауза между случайными ответами: {cooldown} с"
)

CHANCE_USAGE = "Напиши шанс числом от 0 до 1, например: /chance 0.1 (сейчас: {chance:g})"
CHANCE_SET = "Готово: шанс случайного ответа теперь {chance:g}."
MUTED = "Молчу. Отвечу только на /ask. Вернуть: /unmute"
UNMUTED = "Снова в треде."
ADMINS_ONLY = "Это могут только админы чата."
ADMIN_CHECK_FAILED = "Не получилось проверить, админ ли ты. Попробуй позже."
SAVE_FAILED = "Не получилось сохранить настройки. Попробуй позже."
ASK_USAGE = "Напиши текст после команды: /ask как дела? Или ответь командой на чьё-то сообщение."

# Said once when the bot is added to a group: what it does, the commands, and whether privacy
# mode lets it reply at random (getMe's can_read_all_group_messages, or being an admin).
GREETING = (
    "Привет, анон. Я отвечаю как завсегдатай /b/ с двача: когда меня упоминают (@{username}) "
    "или отвечают на мои сообщения, а иногда и просто так (шанс {chance:g}).\n"
    "Команды: /ask <текст>, /chance 0..1, /mute, /unmute (только админы), /settings, /help.\n"
    "{privacy}"
)
GREETING_SEES_ALL = "Я вижу все сообщения группы, так что иногда буду отвечать сам. Замолчать: /mute."
GREETING_PRIVACY_ON = (
    "Сейчас у меня включён режим приватности: я вижу только команды, упоминания и ответы мне, "
    "поэтому случайных ответов не будет. Чтобы они были, сделайте меня админом группы или "
    "выключите режим: @BotFather → /setprivacy → Disable, и добавьте меня заново."
)

# Said once in a group not on the allow-list, right before the bot leaves it.
NOT_ALLOWED = (
    "Меня здесь не ждали: хозяин бота разрешил мне отвечать только в некоторых группах, и этой "
    "среди них нет. Ухожу и ничего отсюда не сохраняю. Если это ошибка, попросите хозяина бота "
    "добавить чат {chat_id} в список."
)

# A short apology, private chats only, at most once per BOT_APOLOGY_INTERVAL_S per chat.
APOLOGY = "Что-то я задумался и не успел ответить. Попробуй ещё раз чуть позже."

# The turn sent to the model when a mention carries no text and answers nothing.
EMPTY_MENTION_PROMPT = "привет"

YES, NO = "да", "нет"
