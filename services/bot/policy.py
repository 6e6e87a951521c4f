"""When the bot answers a message: pure functions over plain facts, so every rule is unit-testable.

The handler turns an aiogram Message into `MessageFacts`, reads the chat's settings, rolls a
random number and asks `decide`. Checks that need shared state (cooldown, queue length, rate
budgets, per-user floods) come after a positive decision, in the responder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from shared.schemas import Tone

# Why a message got an answer. `ask` is the /ask command; `random` is an unprompted group reply.
ReplyKind = Literal["private", "mention", "reply", "ask", "random"]
GROUP_TYPES = frozenset({"group", "supergroup"})


@dataclass(frozen=True)
class MessageFacts:
    chat_type: str  # private, group, supergroup, channel
    has_text: bool  # text, or a caption of media
    from_bot: bool  # sent by a bot (another bot, or the channel / anonymous-admin stand-ins)
    is_command: bool  # starts with "/" (commands are the command router's business)
    mentions_bot: bool  # @username of this bot, or a text_mention of it
    replies_to_bot: bool  # a reply to one of this bot's messages
    is_automatic_forward: bool = False  # a linked channel's post copied into its discussion group


@dataclass(frozen=True)
class ChatPolicy:
    reply_chance: float
    muted: bool


@dataclass(frozen=True)
class Decision:
    answer: bool
    kind: ReplyKind | None = None
    reason: str | None = None  # why not, when answer is False (the `reason` label of the skips metric)

    @property
    def priority(self) -> Literal["interactive", "bulk"]:
        """Mentions, replies and private chats jump the queue; random replies wait in the bulk one."""
        return "bulk" if self.kind == "random" else "interactive"


def skip(reason: str) -> Decision:
    return Decision(False, None, reason)


def ignore_reason(facts: MessageFacts) -> str | None:
    """Why a message is never answered whatever the chat's settings (None: it may be)."""
    if facts.from_bot or facts.is_automatic_forward:
        return "bot_sender"
    if facts.chat_type not in GROUP_TYPES and facts.chat_type != "private":
        return "chat_type"
    if not facts.has_text:
        return "no_text"
    if facts.is_command:
        return "command"
    return None


def decide(facts: MessageFacts, chat: ChatPolicy, roll: float) -> Decision:
    """Whether to answer a message, and as what kind of reply.

    `roll` is a uniform random number in [0, 1): a random reply happens when it is below the chat's
    chance, so chance 0 never answers and chance 1 always does. A muted chat gets no replies at
    all (only /ask, which is a command).
    """
    if (reason := ignore_reason(facts)) is not None:
        return skip(reason)
    if chat.muted:
        return skip("muted")
    addressed: tuple[tuple[ReplyKind, bool], ...] = (
        ("private", facts.chat_type == "private"),
        ("mention", facts.mentions_bot),
        ("reply", facts.replies_to_bot),
        ("random", roll < chat.reply_chance),
    )
    for kind, applies in addressed:
        if applies:
            return Decision(True, kind)
    return skip("chance")


def parse_chance(arg: str | None) -> float | None:
    """`/chance` argument to a probability: `0.3`, `0,3` or `30%`; None when it is not one in [0, 1]."""
    if not arg:
        return None
    text = arg.strip().replace(",", ".")
    percent = text.endswith("%")
    try:
        value = float(text.rstrip("%").strip())
    except ValueError:
        return None
    if percent:
        value /= 100
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        return None
    return value


_TONE_WORDS: dict[str, Tone] = {
    "мягко": "soft",
    "мягкий": "soft",
    "soft": "soft",
    "обычно": "normal",
    "обычный": "normal",
    "normal": "normal",
    "жёстко": "sharp",
    "жестко": "sharp",
    "жёсткий": "sharp",
    "жесткий": "sharp",
    "sharp": "sharp",
}


def parse_tone(arg: str | None) -> Tone | None:
    """`/tone` argument to a tone: мягко, обычно, жёстко (or жестко; soft, normal, sharp); None otherwise."""
    if not arg:
        return None
    return _TONE_WORDS.get(arg.strip().lower())
