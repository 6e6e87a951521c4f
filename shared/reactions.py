"""Telegram reactions as the bot records them, and which of them approve of a reply.

A reaction's kind is its emoji (Telegram allows a fixed set), `custom` for a custom emoji and
`paid` for a paid (star) reaction. Approval of a reply is likes / (likes + dislikes): the likes are
the plainly approving emoji below, the dislikes the plainly disapproving ones; the rest (🤔, 😱,
👀, ...) count as reactions but neither way. Used by the bot (counts per reply), the gateway
(approval by model version and chat) and the trainer (`--feedback`)."""

from __future__ import annotations

LIKES = frozenset(
    {
        "👍",
        "❤",
        "❤️",
        "🔥",
        "🥰",
        "👏",
        "😁",
        "🤩",
        "🎉",
        "🙏",
        "👌",
        "😍",
        "❤‍🔥",
        "💯",
        "🤣",
        "⚡",
        "🏆",
        "🍾",
        "💋",
        "😘",
        "🤗",
        "🆒",
        "😎",
        "💘",
        "🤝",
        "✍",
        "🫡",
        "😇",
        "😂",
        "🥳",
        "☃",
        "🎄",
        "🤓",
        "😻",
    }
)
DISLIKES = frozenset(
    {
        "👎",
        "🤮",
        "💩",
        "🤬",
        "😡",
        "🤡",
        "🥱",
        "🖕",
        "💔",
        "😴",
        "🤨",
        "😐",
        "🙄",
        "😢",
        "😭",
    }
)


def reaction_kind(reaction: object) -> str:
    """The kind of one of aiogram's ReactionType* objects (or the Bot API's dict)."""
    data = reaction if isinstance(reaction, dict) else {"type": getattr(reaction, "type", None)}
    if not isinstance(reaction, dict):
        data["emoji"] = getattr(reaction, "emoji", None)
    if data.get("type") == "emoji" and data.get("emoji"):
        return str(data["emoji"])
    if data.get("type") == "custom_emoji":
        return "custom"
    return "paid" if data.get("type") == "paid" else "other"


def likes_and_dislikes(counts: dict[str, int]) -> tuple[int, int]:
    """How many of `counts` ({kind: count}) approve, and how many disapprove."""
    likes = sum(n for kind, n in counts.items() if kind in LIKES)
    dislikes = sum(n for kind, n in counts.items() if kind in DISLIKES)
    return likes, dislikes


def approval(likes: int, dislikes: int) -> float | None:
    """likes / (likes + dislikes); None when no one took a side."""
    return likes / (likes + dislikes) if likes + dislikes else None
