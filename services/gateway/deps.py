"""Dependencies of the routes, as named `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.generation_client import GenerationClient
from shared.settings import Settings


def get_client(request: Request) -> GenerationClient:
    return request.app.state.client


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


ClientDep = Annotated[GenerationClient, Depends(get_client)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
