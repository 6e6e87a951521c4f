"""The record of each generated reply the bot sent (table `bot_replies`): where (chat, message id),
how it was made (job id, model version, and the chosen candidate's tone and scores when the
generation result carries them), and, only while the chat's learning is on (`/learn on`), the
messages it answered and its own text. reactions.py keeps the reactions on it; the trainer takes
the liked ones (`--feedback`). A record that cannot be written is logged and skipped: the reply
has been sent already."""

from __future__ import annotations

import logging

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from shared.db.models import BotReply

log = logging.getLogger(__name__)


class ReplyLog:
    def __init__(self, engine: AsyncEngine):
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def record(
        self,
        chat_id: int,
        message_id: int,
        *,
        job_id: str,
        model_version: str,
        tone: str | None = None,
        scores: dict | None = None,
        dialog: list[str] | None = None,
        text: str | None = None,
    ) -> bool:
        """Store one sent reply (`dialog` and `text` only for a chat that learns); True if stored."""
        stmt = (
            insert(BotReply)
            .values(
                chat_id=chat_id,
                message_id=message_id,
                job_id=job_id[:64],
                model_version=model_version[:128],
                tone=tone,
                scores=scores,
                dialog=dialog,
                text=text,
            )
            .on_conflict_do_nothing()
        )
        try:
            async with self.sessions() as session, session.begin():
                await session.execute(stmt)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("reply log: could not record a reply", extra={"chat_id": chat_id, "error": str(exc)})
            return False
        return True
