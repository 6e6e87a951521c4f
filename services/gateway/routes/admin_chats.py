"""Admin: the bot's per-chat settings (the same table the bot's commands write) and each chat's
state in Telegram: `active`, `inactive` (the bot was removed or blocked; the state is deleted after
BOT_RETENTION_DAYS) or `migrated` (a group that became a supergroup: listed under its new id only,
the old id is a pointer that `?state=migrated` shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from services.gateway.auth import ADMIN_RESPONSES, AdminDep, Responses
from services.gateway.deps import DbDep
from shared.db.models import ChatSettings
from shared.schemas import Tone

ChatState = Literal["active", "inactive", "migrated"]

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
                    "tone": "normal",
                    "state": "active",
                    "state_reason": "migrated",
                    "state_changed_at": "2026-11-29T08:00:00Z",
                    "migrated_from": -4012345678,
                    "migrated_to": None,
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
    tone: Tone = Field(description="Replies chosen soft (least toxic), normal (the middle) or sharp (under a ceiling)")
    state: ChatState = Field(description="active; inactive: the bot was removed or blocked; migrated: now a supergroup")
    state_reason: str | None = Field(
        default=None, description="Why the state last changed: added, kicked, left, blocked, forbidden, migrated, ..."
    )
    state_changed_at: datetime | None = None
    migrated_from: int | None = Field(default=None, description="The group this supergroup was")
    migrated_to: int | None = Field(default=None, description="The supergroup this group became (state migrated)")
    created_at: datetime
    updated_at: datetime


class ChatUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reply_chance": 0.25, "muted": False}]})
    reply_chance: float | None = Field(default=None, ge=0, le=1, description="Chance of a random reply in a group")
    muted: bool | None = None
    cooldown_s: int | None = Field(default=None, ge=0, le=86400, description="Seconds between random replies")
    tone: Tone | None = Field(
        default=None,
        description="soft: the least toxic acceptable candidate; normal: the middle; sharp: the "
        "sharpest under a fixed ceiling (docs/inference.md, Reranker)",
    )


async def _get(db, chat_id: int) -> ChatSettings:
    chat = await db.get(ChatSettings, chat_id)
    if chat is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no chat {chat_id}")
    if chat.state == "migrated":
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"chat {chat_id} became the supergroup {chat.migrated_to}: see /admin/chats/{chat.migrated_to}",
        )
    return chat


@router.get(
    "",
    response_model=list[ChatOut],
    summary="Chats the bot knows, most recently changed first (a migrated group under its new id only)",
)
async def list_chats(
    db: DbDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
    state: Annotated[
        ChatState | None, Query(description="Only chats in this state; unset: active and inactive ones")
    ] = None,
):
    query = select(ChatSettings)
    query = query.where(ChatSettings.state == state if state else ChatSettings.state != "migrated")
    rows = await db.scalars(
        query.order_by(ChatSettings.updated_at.desc(), ChatSettings.chat_id).limit(limit).offset(offset)
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
