"""Dependencies of the routes, as named `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from shared.generation_client import GenerationClient
from shared.settings import GatewaySettings


def get_client(request: Request) -> GenerationClient:
    return request.app.state.client


def get_app_settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


ClientDep = Annotated[GenerationClient, Depends(get_client)]
SettingsDep = Annotated[GatewaySettings, Depends(get_app_settings)]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker = request.app.state.sessionmaker
    if sessionmaker is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no database configured (DATABASE_URL)")
    async with sessionmaker() as session:
        yield session


DbDep = Annotated[AsyncSession, Depends(get_db)]
