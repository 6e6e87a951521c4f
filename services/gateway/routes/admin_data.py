"""Admin: the scraper's runs and the dataset it built (figures from shared/db/dataset.py, the
queries the scraper's `stats` and `export` use too)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from services.gateway.auth import ADMIN_RESPONSES, AdminDep
from services.gateway.deps import ClientDep, DbDep
from shared.db import dataset
from shared.db.models import ScrapeRun
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
async def scraper_stats(db: DbDep) -> ScraperStats:
    counts = await db.run_sync(dataset.table_counts)
    last = await db.scalar(select(ScrapeRun).order_by(ScrapeRun.started_at.desc()).limit(1))
    return ScraperStats(
        threads=counts.threads,
        posts=counts.posts,
        dialogs=counts.dialogs,
        scored_dialogs=counts.scored_dialogs,
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
async def dataset_stats(db: DbDep) -> DatasetStats:
    stats = await db.run_sync(dataset.dataset_stats)
    return DatasetStats(
        dialogs=stats.dialogs,
        scored=stats.scored,
        by_length={str(length): count for length, count in stats.by_length.items()},
        toxicity_histogram=[{"from": low, "to": high, "count": count} for low, high, count in stats.bins()],
        toxicity_quantiles={
            str(level): (round(value, 4) if value is not None else None) for level, value in stats.quantiles.items()
        },
    )
