"""Admin: the bot's per-chat settings (the same table the bot's commands write)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from services.gateway.auth import ADMIN_RESPONSES, AdminDep, Responses
from services.gateway.deps import DbDep
from shared.db.models import ChatSettings

# Telegram chat ids are signed 64-bit integers (the column is BIGINT).
ChatId = Annotated[int, Path(ge=-(2**63), le=2**63 - 1, description="Telegram chat id")]
NOT_FOUND: Responses = {404: {"description": "Unknown chat"}}

router = APIRouter(prefix="/admin/chats", tags=["admin"], dependencies=[AdminDep], responses=ADMIN_RESPONSES)


class ChatOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "chat_id": -1001234567890,
                    "title": "Двачеры",
                    "chat_type": "supergroup",
                    "reply_chance": 0.1,
                    "muted": False,
                    "cooldown_s": 60,
                    "created_at": "2026-11-28T12:00:00Z",
                    "updated_at": "2026-11-28T12:00:00Z",
                }
            ]
        },
    )
    chat_id: int
    title: str | None
    chat_type: str | None
    reply_chance: float
    muted: bool
    cooldown_s: int
    created_at: datetime
    updated_at: datetime


class ChatUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reply_chance": 0.25, "muted": False}]})
    reply_chance: float | None = Field(default=None, ge=0, le=1, description="Chance of a random reply in a group")
    muted: bool | None = None
    cooldown_s: int | None = Field(default=None, ge=0, le=86400, description="Seconds between random replies")


async def _get(db, chat_id: int) -> ChatSettings:
    chat = await db.get(ChatSettings, chat_id)
    if chat is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no chat {chat_id}")
    return chat


@router.get("", response_model=list[ChatOut], summary="Chats the bot knows, most recently changed first")
async def list_chats(db: DbDep, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10**9)):
    rows = await db.scalars(
        select(ChatSettings).order_by(ChatSettings.updated_at.desc(), ChatSettings.chat_id).limit(limit).offset(offset)
    )
    return list(rows)


@router.get("/{chat_id}", response_model=ChatOut, responses=NOT_FOUND, summary="One chat")
async def show_chat(chat_id: ChatId, db: DbDep):
    return await _get(db, chat_id)


@router.patch("/{chat_id}", response_model=ChatOut, responses=NOT_FOUND, summary="Change a chat's settings")
async def update_chat(chat_id: ChatId, changes: ChatUpdate, db: DbDep):
    chat = await _get(db, chat_id)
    for field, value in changes.model_dump(exclude_none=True).items():
        setattr(chat, field, value)
    await db.commit()
    await db.refresh(chat)
    return chat


@router.post("/{chat_id}/mute", response_model=ChatOut, responses=NOT_FOUND, summary="Silence the bot in a chat")
async def mute_chat(chat_id: ChatId, db: DbDep):
    return await update_chat(chat_id, ChatUpdate(muted=True), db)


@router.post(
    "/{chat_id}/unmute", response_model=ChatOut, responses=NOT_FOUND, summary="Let the bot speak in a chat again"
)
async def unmute_chat(chat_id: ChatId, db: DbDep):
    return await update_chat(chat_id, ChatUpdate(muted=False), db)
