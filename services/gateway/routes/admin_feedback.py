"""Admin: how people take the bot's replies, from the reactions on them (tables `bot_replies` and
`reply_reactions`, written by the bot): approval by model version and by chat. Approval is
likes / (likes + dislikes) over the replies' reactions (shared/reactions.py says which are which);
null while no one took a side. Only replies within BOT_RETENTION_DAYS are there."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.auth import ADMIN_RESPONSES, AdminDep
from services.gateway.deps import DbDep
from shared.db.models import BotReply, ChatSettings
from shared.reactions import approval

router = APIRouter(prefix="/admin/feedback", tags=["admin"], dependencies=[AdminDep], responses=ADMIN_RESPONSES)

_EXAMPLE: dict[str, Any] = {
    "replies": 120,
    "reacted": 31,
    "likes": 40,
    "dislikes": 9,
    "approval": 0.816,
    "reactions": {"👍": 30, "🔥": 10, "👎": 9, "🤔": 2},
}


class Approval(BaseModel):
    replies: int = Field(description="Replies the bot sent (and still keeps)")
    reacted: int = Field(description="Of them, replies with at least one reaction")
    likes: int
    dislikes: int
    approval: float | None = Field(description="likes / (likes + dislikes); null: no one took a side")
    reactions: dict[str, int] = Field(description="All reactions by kind (emoji, custom, paid)")


class ModelApproval(Approval):
    model_config = ConfigDict(json_schema_extra={"examples": [{"model_version": "ft-2026-12-01", **_EXAMPLE}]})
    model_version: str


class ChatApproval(Approval):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"chat_id": -1001234567890, "title": "Двачеры", **_EXAMPLE}]}
    )
    chat_id: int
    title: str | None = None


async def _approval(db: AsyncSession, key: Any, limit: int) -> list[dict]:
    """Per value of `key` (a bot_replies column): the counts, most replies first."""
    totals: Select = (
        select(
            key.label("key"),
            func.count().label("replies"),
            func.count().filter(BotReply.reactions != text("'{}'::jsonb")).label("reacted"),
            func.coalesce(func.sum(BotReply.likes), 0).label("likes"),
            func.coalesce(func.sum(BotReply.dislikes), 0).label("dislikes"),
        )
        .group_by(key)
        .order_by(func.count().desc(), key)
        .limit(limit)
    )
    rows = {row.key: dict(row._mapping) for row in await db.execute(totals)}
    # The reactions by kind: each reply's {kind: count} expanded with jsonb_each_text.
    result = await db.execute(
        text(
            f"SELECT {key.key} AS key, r.key AS kind, sum(r.value::int) AS n "
            "FROM bot_replies, jsonb_each_text(bot_replies.reactions) AS r "
            f"WHERE {key.key} = ANY(:keys) GROUP BY {key.key}, r.key"
        ),
        {"keys": list(rows)},
    )
    for row in rows.values():
        row["reactions"] = {}
    for key_value, kind, count in result:
        rows[key_value]["reactions"][kind] = int(count)
    for row in rows.values():
        row["likes"], row["dislikes"] = int(row["likes"]), int(row["dislikes"])
        row["approval"] = approval(row["likes"], row["dislikes"])
    return list(rows.values())


@router.get("/models", response_model=list[ModelApproval], summary="Approval of the replies by model version")
async def by_model(db: DbDep, limit: int = Query(100, ge=1, le=1000)):
    rows = await _approval(db, BotReply.model_version, limit)
    return [{"model_version": row.pop("key"), **row} for row in rows]


@router.get("/chats", response_model=list[ChatApproval], summary="Approval of the replies by chat")
async def by_chat(db: DbDep, limit: int = Query(100, ge=1, le=1000)):
    rows = await _approval(db, BotReply.chat_id, limit)
    titles = dict(
        (
            await db.execute(
                select(ChatSettings.chat_id, ChatSettings.title).where(
                    ChatSettings.chat_id.in_([r["key"] for r in rows])
                )
            )
        ).all()
    )
    return [
        {"chat_id": row["key"], "title": titles.get(row["key"]), **{k: v for k, v in row.items() if k != "key"}}
        for row in rows
    ]
