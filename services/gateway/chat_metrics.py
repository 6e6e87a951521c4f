"""The bot's chats by state (active, inactive, migrated), from the chat_settings table, refreshed
in the background like the broker gauges (a scrape never waits on the database)."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.models import CHAT_STATES, ChatSettings

log = logging.getLogger(__name__)

CHATS = Gauge("dvach_chats", "Chats the bot knows, by state (active, inactive, migrated)", ["state"])


async def refresh_once(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Count the chats by state into the gauge; the counts."""
    async with sessions() as session:
        rows = (await session.execute(select(ChatSettings.state, func.count()).group_by(ChatSettings.state))).all()
    counts = {state: 0 for state in CHAT_STATES} | {state: int(count) for state, count in rows}
    for state, count in counts.items():
        CHATS.labels(state=state).set(count)
    return counts


async def refresh_forever(sessions: async_sessionmaker[AsyncSession], interval_s: float = 15.0) -> None:
    while True:
        try:
            await refresh_once(sessions)
        except (SQLAlchemyError, OSError) as exc:
            log.debug("chat counts unavailable", extra={"error": type(exc).__name__})
        except Exception:  # never let the metrics loop die
            log.exception("chat counts refresh failed")
        await asyncio.sleep(interval_s)  # the refresh period, not a synchronisation
