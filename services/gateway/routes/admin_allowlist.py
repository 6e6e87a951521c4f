"""Admin: the allow-list of groups the bot answers in (table `chat_allowlist`; the bot adds
BOT_ALLOWED_CHATS to it). Both empty: every group. The bot leaves a group not on a non-empty list
after saying so once; adding the group here lets it be added again (and told again if removed)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from services.gateway.auth import ADMIN_RESPONSES, AdminDep
from services.gateway.deps import DbDep
from shared.db.models import ChatAllowed, ChatRefusal

ChatId = Annotated[int, Path(ge=-(2**63), le=2**63 - 1, description="Telegram chat id of a group")]

router = APIRouter(prefix="/admin/allowlist", tags=["admin"], dependencies=[AdminDep], responses=ADMIN_RESPONSES)


class AllowedChat(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [{"chat_id": -1001234567890, "note": "наш чат", "added_at": "2026-12-03T12:00:00Z"}]
        },
    )
    chat_id: int
    note: str | None = None
    added_at: datetime


class AllowChat(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"note": "наш чат"}]})
    note: str | None = Field(default=None, max_length=256, description="Whatever helps you remember the group")


@router.get("", response_model=list[AllowedChat], summary="The groups on the allow-list (empty: every group)")
async def list_allowed(db: DbDep):
    return list(await db.scalars(select(ChatAllowed).order_by(ChatAllowed.added_at, ChatAllowed.chat_id)))


@router.put("/{chat_id}", response_model=AllowedChat, summary="Allow the bot in a group")
async def allow_chat(chat_id: ChatId, db: DbDep, body: Annotated[AllowChat | None, Body()] = None):
    note = body.note if body else None
    stmt = insert(ChatAllowed).values(chat_id=chat_id, note=note)
    stmt = stmt.on_conflict_do_update(index_elements=[ChatAllowed.chat_id], set_={"note": stmt.excluded.note})
    row = (await db.execute(stmt.returning(ChatAllowed))).scalar_one()
    # Told once that it was not allowed: if it is removed again later, it is told again.
    await db.execute(delete(ChatRefusal).where(ChatRefusal.chat_id == chat_id))
    await db.commit()
    return row


@router.delete(
    "/{chat_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "The group is not on the list"}},
    summary="Take a group off the allow-list (the bot leaves it at its next update there)",
)
async def disallow_chat(chat_id: ChatId, db: DbDep) -> Response:
    deleted = await db.scalar(delete(ChatAllowed).where(ChatAllowed.chat_id == chat_id).returning(ChatAllowed.chat_id))
    if deleted is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"chat {chat_id} is not on the allow-list")
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
