"""Where training dialogs come from: the `dialogs` table (toxicity quantile, size limit) or a JSONL.

A dialog travels newest first, as everywhere in the project: `turns[0]` is the reply the model
learns to write, `turns[1:]` its context. The JSONL is the project's one dialog format
(shared/dialog_jsonl.py), which the scraper's `export` writes too; the selection by toxicity is
the same query the scraper exports with (shared/db/dataset.py). `--feedback` adds the bot's
replies people liked (`read_feedback`, from the `bot_replies` the bot records) as extra examples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.dialog_jsonl import DialogLine
from shared.dialog_jsonl import read_jsonl as read_lines
from shared.dialog_jsonl import write_jsonl as write_lines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DialogRecord:
    id: str | int | None
    turns: list[str]  # newest first; turns[0] is the reply
    toxicity: float | None = None

    def to_line(self) -> DialogLine:
        return DialogLine(id=self.id, dialogue=self.turns, toxicity=self.toxicity)


@dataclass
class DialogSource:
    """The dialogs of one run and how they were selected (goes into version.json's `data`)."""

    dialogs: list[DialogRecord]
    description: dict[str, Any] = field(default_factory=dict)


def usable(turns: Iterable[str]) -> list[str] | None:
    """Stripped turns, or None when there is no reply with at least one turn of context."""
    cleaned = [t.strip() for t in turns]
    if len(cleaned) < 2 or not all(cleaned):
        return None
    return cleaned


def read_jsonl(path: Path, limit: int | None = None) -> DialogSource:
    """Dialogs from a dialog JSONL (first `limit` usable lines); bad lines are counted, not fatal."""
    path = Path(path)
    dialogs: list[DialogRecord] = []
    skipped = 0
    for number, line in read_lines(path):
        if line is None:
            log.warning("unreadable JSONL line skipped", extra={"file": str(path), "line": number})
            skipped += 1
            continue
        turns = usable(line.dialogue)
        if turns is None:
            skipped += 1
            continue
        dialogs.append(DialogRecord(number if line.id is None else line.id, turns, line.toxicity))
        if limit is not None and len(dialogs) >= limit:
            break
    return DialogSource(dialogs, {"source": "jsonl", "path": str(path), "limit": limit, "skipped": skipped})


def read_database(database_url: str, quantile: float, limit: int | None = None) -> DialogSource:
    """Dialogs from the `dialogs` table whose toxicity is at or above the `quantile` of scored ones.

    `quantile=0` takes every dialog, scored or not. With a `limit` the most toxic are kept.
    The order (toxicity descending, then id) is deterministic, so the same table gives the same hash.
    """
    from shared.db import make_engine
    from shared.db.dataset import dialog_lines, selected_dialogs, toxicity_threshold

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            threshold = None
            if quantile > 0:
                threshold = toxicity_threshold(conn, quantile)
                if threshold is None:
                    raise ValueError("no dialog has a toxicity score yet: score them first, or pass --quantile 0")
            dialogs, skipped = [], 0
            for line in dialog_lines(conn, selected_dialogs(threshold, most_toxic_first=True)):
                turns = usable(line.dialogue)
                if turns is None:
                    skipped += 1
                    continue
                dialogs.append(DialogRecord(line.id, turns, line.toxicity))
                if limit is not None and len(dialogs) >= limit:
                    break
    finally:
        engine.dispose()
    description = {
        "source": "database",
        "quantile": quantile,
        "toxicity_threshold": threshold,
        "limit": limit,
        "skipped": skipped,
    }
    return DialogSource(dialogs, description)


def read_feedback(database_url: str, threshold: int) -> list[DialogRecord]:
    """The bot's replies people liked, as dialogs (the reply, then the turns it answered): at least
    `threshold` more likes than dislikes, from chats whose learning is on now (`/learn on`; a
    reply's text is kept only while it is, and a chat that turned it off since is left out too).
    Oldest first, so the same table gives the same snapshot."""
    from sqlalchemy import select

    from shared.db import make_engine
    from shared.db.models import BotReply, ChatSettings

    query = (
        select(BotReply.chat_id, BotReply.message_id, BotReply.text, BotReply.dialog)
        .join(ChatSettings, ChatSettings.chat_id == BotReply.chat_id)
        .where(
            ChatSettings.learn.is_(True),
            BotReply.text.is_not(None),
            BotReply.dialog.is_not(None),
            BotReply.likes - BotReply.dislikes >= threshold,
        )
        .order_by(BotReply.created_at, BotReply.chat_id, BotReply.message_id)
    )
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    finally:
        engine.dispose()
    dialogs = []
    for chat_id, message_id, text, dialog in rows:
        turns = usable([text or "", *(dialog or [])])
        if turns is not None:
            dialogs.append(DialogRecord(f"reply:{chat_id}:{message_id}", turns))
    return dialogs


def with_feedback(source: DialogSource, database_url: str, threshold: int) -> DialogSource:
    """`source` with the liked replies added as extra examples (and said so in its description)."""
    liked = read_feedback(database_url, threshold)
    description = {**source.description, "feedback": {"threshold": threshold, "replies": len(liked)}}
    return DialogSource([*source.dialogs, *liked], description)


def write_jsonl(dialogs: Iterable[DialogRecord], path: Path) -> Path:
    """A run's dialogs (its data snapshot, or `export`) in the dialog JSONL."""
    write_lines((dialog.to_line() for dialog in dialogs), path)
    return Path(path)
