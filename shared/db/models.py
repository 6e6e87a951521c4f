"""Every table of the project (SQLAlchemy 2 declarative). Migrations live in `migrations/`.

- chat_settings: per-chat bot settings and the chat's state in Telegram (active, inactive after the
  bot was removed or blocked, migrated to a supergroup), written by the bot and the admin API.
- chat_allowlist, chat_refusals: the groups the bot may answer in (empty: all), and the groups it
  told it is not allowed in (so that it says so once).
- bot_replies, reply_reactions: each reply the bot sent (and, where learning is on, the text it
  answered and its own), and the reactions people put on it.
- model_versions: published fine-tunes; exactly one is active.
- threads, posts, dialogs, scrape_runs: the scraper's data and the training set built from it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    @classmethod
    def table(cls) -> Table:
        """The class's Core table (for bulk inserts and updates; `__table__` is typed as a FromClause)."""
        return cls.metadata.tables[cls.__tablename__]


# A chat's state (chat_settings.state): `active`; `inactive`: the bot was removed, kicked or blocked
# (nothing is generated for it; its state goes after BOT_RETENTION_DAYS); `migrated`: a group that
# became a supergroup, kept only as a pointer to its new id (`migrated_to`) until the retention ends.
CHAT_STATES = ("active", "inactive", "migrated")


class ChatSettings(Base):
    __tablename__ = "chat_settings"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    title: Mapped[str | None] = mapped_column(String(256))
    chat_type: Mapped[str | None] = mapped_column(String(32))
    # Chance of a random (unprompted) reply in a group; the seed's bot used 0.1.
    reply_chance: Mapped[float] = mapped_column(Float, default=0.1, server_default="0.1")
    muted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Seconds between two random replies in the same chat.
    cooldown_s: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    # Which candidate the reranker chooses by toxicity: soft, normal, sharp (shared/schemas.py Tone).
    tone: Mapped[str] = mapped_column(String(8), default="normal", server_default="normal")
    state: Mapped[str] = mapped_column(String(16), default="active", server_default="active", index=True)
    # Why the state last changed: kicked, left, blocked, forbidden (a 403 on send), added, unblocked, migrated.
    state_reason: Mapped[str | None] = mapped_column(String(32))
    state_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    migrated_to: Mapped[int | None] = mapped_column(BigInteger)  # the supergroup this group became
    migrated_from: Mapped[int | None] = mapped_column(BigInteger)  # the group this supergroup was
    # `/learn on`: the chat's text (what the bot answered, and its reply) is kept for training.
    learn: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ChatAllowed(Base):
    """A group the bot may answer in. With no row here and BOT_ALLOWED_CHATS empty, it answers in
    every group; otherwise it leaves the groups not listed."""

    __tablename__ = "chat_allowlist"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    note: Mapped[str | None] = mapped_column(String(256))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ChatRefusal(Base):
    """A group the bot told it may not answer there (once), and left. Only the id and the time."""

    __tablename__ = "chat_refusals"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    refused_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


class BotReply(Base):
    """A generated reply the bot sent. `dialog` (the messages it answered, newest first) and `text`
    are kept only while the chat's learning is on (`/learn on`); the rest is how it was made and
    how people took it. Deleted after BOT_RETENTION_DAYS, or at once by /forget."""

    __tablename__ = "bot_replies"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the bot's message
    job_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    # The chosen candidate's tone and scores, when the generation result carries them.
    tone: Mapped[str | None] = mapped_column(Text)
    scores: Mapped[dict | None] = mapped_column(JSONB)
    dialog: Mapped[list[str] | None] = mapped_column(JSONB)
    text: Mapped[str | None] = mapped_column(Text)
    # The reactions on it now: {kind: count} (an emoji, `custom:<id>` or `paid`), and of those the
    # approving and disapproving ones (shared/reactions.py decides which are which).
    reactions: Mapped[dict] = mapped_column(JSONB, default=dict, server_default="{}")
    likes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dislikes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


class ReplyReaction(Base):
    """Who reacted how to a bot reply, as Telegram last told (`message_reaction`): `actor` is
    `user:<id>` or `chat:<id>` (an anonymous admin or a channel), `anonymous` for the counts of
    anonymous reactions (`message_reaction_count`). Goes with its reply."""

    __tablename__ = "reply_reactions"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    actor: Mapped[str] = mapped_column(String(64), primary_key=True)
    kinds: Mapped[dict] = mapped_column(JSONB)  # {kind: count}; a person's count is 1 per kind
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        ForeignKeyConstraint(
            ["chat_id", "message_id"], ["bot_replies.chat_id", "bot_replies.message_id"], ondelete="CASCADE"
        ),
    )


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str] = mapped_column(Text)
    base_model: Mapped[str | None] = mapped_column(Text)
    data_hash: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict | None] = mapped_column(JSONB)
    params: Mapped[dict | None] = mapped_column(JSONB)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # At most one active version, enforced by the database itself.
        Index("uq_model_versions_one_active", "is_active", unique=True, postgresql_where=is_active.is_(True)),
    )


class Thread(Base):
    __tablename__ = "threads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    board: Mapped[str] = mapped_column(String(32))
    num: Mapped[int] = mapped_column(BigInteger)
    subject: Mapped[str | None] = mapped_column(Text)
    # What the board's listing said at the last successful fetch: a thread whose listing entry
    # still shows the same reply count and last-hit time is not fetched again.
    posts_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lasthit: Mapped[int | None] = mapped_column(BigInteger)
    last_post_num: Mapped[int | None] = mapped_column(BigInteger)
    # Conditional requests: what the server said last time.
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Last time the thread was listed on its board; threads that fell off the board are kept.
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_fetched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("board", "num", name="uq_threads_board_num"),)


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    board: Mapped[str] = mapped_column(String(32))
    num: Mapped[int] = mapped_column(BigInteger)
    thread_num: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int | None] = mapped_column(BigInteger)
    raw_html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    # Post numbers this post replies to, in the order its links appear (the first is the parent).
    parents: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), default=list, server_default="{}")
    # Whom the post answers: [{"to": [post nums]}] for one answer (the post's text), one
    # {"to": [...], "text": "..."} per part for a post answering several people in turn, [] for
    # none. NULL for posts stored before revision 0002_post_answers: their first link answers.
    answers: Mapped[list[dict] | None] = mapped_column(JSONB)
    # Dropped by cleaning (empty, bump, sage): kept for link resolution, never a dialog turn.
    is_usable: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("board", "num", name="uq_posts_board_num"),
        Index("ix_posts_board_thread", "board", "thread_num"),
    )


class Dialog(Base):
    __tablename__ = "dialogs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # sha256 of the turns: the same dialog is stored once, whatever thread it came from.
    turns_hash: Mapped[str] = mapped_column(String(64), unique=True)
    turns: Mapped[list[str]] = mapped_column(JSONB)  # newest first
    post_nums: Mapped[list[int]] = mapped_column(JSONB)  # the post of each turn, newest first
    board: Mapped[str] = mapped_column(String(32))
    thread_num: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)
    toxicity: Mapped[float | None] = mapped_column(Float, index=True)
    scored_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ScrapeRun(Base):
    __tablename__ = "scrape_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), default="crawl", server_default="crawl")  # crawl, score, export
    # running -> finished | failed; a run found still `running` by the next one is `interrupted`.
    status: Mapped[str] = mapped_column(String(16), default="running", server_default="running")
    boards: Mapped[list[str]] = mapped_column(JSONB, default=list)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    threads_seen: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    threads_fetched: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    threads_unchanged: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    threads_failed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    posts_added: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dialogs_added: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    errors: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_messages: Mapped[list[str]] = mapped_column(JSONB, default=list)
    # What a `score` or `export` run did (model, dialogs scored; quantile, threshold, exported...).
    details: Mapped[dict | None] = mapped_column(JSONB)


__all__ = [
    "CHAT_STATES",
    "Base",
    "BotReply",
    "ChatAllowed",
    "ChatRefusal",
    "ChatSettings",
    "Dialog",
    "ModelVersion",
    "Post",
    "ReplyReaction",
    "ScrapeRun",
    "Thread",
]
