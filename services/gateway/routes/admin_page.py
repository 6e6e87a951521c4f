"""The admin page: one static HTML file that talks to the admin API with the token it asks for."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)
PAGE = Path(__file__).resolve().parent.parent / "admin_page" / "index.html"


@router.get("/admin/")
@router.get("/admin")
async def admin_page() -> FileResponse:
    # The page holds no data; everything it shows comes from the token-protected API.
    return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})
