"""Admin: the scraper's runs and the dataset it built."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from services.gateway.auth import ADMIN_RESPONSES, AdminDep
from services.gateway.deps import ClientDep, DbDep
from shared.db.models import Dialog, Post, ScrapeRun, Thread
from shared.scrape_requests import CRAWL_REQUESTS_KEY

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep], responses=ADMIN_RESPONSES)


class ScrapeRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    status: str
    boards: list[str] | None
    started_at: datetime
    finished_at: datetime | None
    threads_seen: int
    threads_fetched: int
    posts_added: int
    dialogs_added: int
    errors: int
    error_messages: list[str] | None


class ScraperStats(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"threads": 120, "posts": 40211, "dialogs": 18034, "scored_dialogs": 18034, "last_run": None}]
        }
    )
    threads: int
    posts: int
    dialogs: int
    scored_dialogs: int
    last_run: ScrapeRunOut | None


class CrawlRequested(BaseModel):
    request_id: str
    detail: str


class DatasetStats(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dialogs": 1000,
                    "scored": 900,
                    "by_length": {"2": 600, "3": 300, "4": 100},
                    "toxicity_histogram": [{"from": 0.0, "to": 0.1, "count": 500}],
                    "toxicity_quantiles": {"0.5": 0.31, "0.75": 0.82, "0.9": 0.95},
                }
            ]
        }
    )
    dialogs: int
    scored: int
    by_length: dict[str, int]
    toxicity_histogram: list[dict[str, float]]
    toxicity_quantiles: dict[str, float | None]


@router.get("/scraper/runs", response_model=list[ScrapeRunOut], summary="The scraper's last runs, newest first")
async def scrape_runs(db: DbDep, limit: int = Query(20, ge=1, le=200)):
    return list(await db.scalars(select(ScrapeRun).order_by(ScrapeRun.started_at.desc()).limit(limit)))


@router.get("/scraper", response_model=ScraperStats, summary="What the scraper has collected")
async def scraper_stats(db: DbDep):
    threads = await db.scalar(select(func.count()).select_from(Thread))
    posts = await db.scalar(select(func.count()).select_from(Post))
    dialogs = await db.scalar(select(func.count()).select_from(Dialog))
    scored = await db.scalar(select(func.count()).select_from(Dialog).where(Dialog.toxicity.is_not(None)))
    last = await db.scalar(select(ScrapeRun).order_by(ScrapeRun.started_at.desc()).limit(1))
    return ScraperStats(
        threads=threads,
        posts=posts,
        dialogs=dialogs,
        scored_dialogs=scored,
        last_run=ScrapeRunOut.model_validate(last) if last else None,
    )


@router.post(
    "/scraper/crawl",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CrawlRequested,
    summary="Ask the running scraper (`scraper run`) to crawl now",
)
async def request_crawl(client: ClientDep) -> CrawlRequested:
    request_id = uuid.uuid4().hex
    await client.redis.lpush(CRAWL_REQUESTS_KEY, json.dumps({"request_id": request_id, "at": time.time()}))
    return CrawlRequested(request_id=request_id, detail="queued: the scraper's run loop starts a crawl when it sees it")


@router.get("/dataset", response_model=DatasetStats, summary="Dialogs by length and their toxicity distribution")
async def dataset_stats(db: DbDep):
    total = await db.scalar(select(func.count()).select_from(Dialog))
    scored = await db.scalar(select(func.count()).select_from(Dialog).where(Dialog.toxicity.is_not(None)))
    by_length = {
        str(length): count
        for length, count in await db.execute(
            select(Dialog.length, func.count()).group_by(Dialog.length).order_by(Dialog.length)
        )
    }
    bucket = func.least(func.floor(Dialog.toxicity * 10), 9)
    counts = dict(
        (await db.execute(select(bucket, func.count()).where(Dialog.toxicity.is_not(None)).group_by(bucket))).all()
    )
    histogram = [{"from": b / 10, "to": (b + 1) / 10, "count": int(counts.get(b, 0))} for b in range(10)]
    levels = [0.25, 0.5, 0.75, 0.9]
    row = (
        await db.execute(
            select(*[func.percentile_cont(q).within_group(Dialog.toxicity) for q in levels]).where(
                Dialog.toxicity.is_not(None)
            )
        )
    ).one()
    quantiles = {str(q): (round(v, 4) if v is not None else None) for q, v in zip(levels, row)}
    return DatasetStats(
        dialogs=total, scored=scored, by_length=by_length, toxicity_histogram=histogram, toxicity_quantiles=quantiles
    )
