"""The scraper's settings (`python -m services.scraper`): crawling, cleaning, scoring, export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.settings.base import CliOption, ComputeSettings

_BOARD = re.compile(r"^[a-z0-9_]{1,32}$")


def parse_boards(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`"b, po"` -> `("b", "po")`; board names are checked because they become URL paths."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    boards = tuple(dict.fromkeys(part.strip().strip("/").lower() for part in parts if part.strip()))
    if not boards:
        raise ValueError("SCRAPER_BOARDS names no board")
    bad = [board for board in boards if not _BOARD.match(board)]
    if bad:
        raise ValueError(f"SCRAPER_BOARDS has invalid board names: {bad}")
    return boards


class ScraperSettings(ComputeSettings):
    """The site and how politely it is crawled, how posts become dialogs, the toxicity scorer, the export."""

    dvach_base_url: str = Field(default="https://2ch.hk", description="Base URL of the 2ch JSON API.")
    scraper_boards: Annotated[tuple[str, ...], NoDecode, CliOption("--boards")] = Field(
        default=("b",), description="Boards to crawl, comma-separated (e.g. `b,po`)."
    )
    scraper_min_replies: int = Field(
        default=20, ge=0, description="Only threads with more replies than this are fetched (the seed: 20)."
    )
    scraper_concurrency: int = Field(default=2, ge=1, le=32, description="Requests in flight at once.")
    scraper_delay_s: float = Field(
        default=1.0, ge=0, description="Polite pause between one request being sent and the next one starting."
    )
    scraper_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request.")
    scraper_max_retries: int = Field(
        default=4, ge=0, description="Retries of a request after a 429, a 5xx, a network error or a cut body."
    )
    scraper_backoff_s: float = Field(
        default=2.0, ge=0, description="First retry waits this long, then doubles (with jitter; Retry-After wins)."
    )
    scraper_backoff_max_s: float = Field(default=120.0, ge=0, description="Longest wait between two retries.")
    scraper_user_agent: str = Field(
        default="dvach-bot-scraper/0.1 (training-data crawler; polite: 1 request/s)",
        description="User-Agent sent to the site: says honestly what is asking.",
    )
    scraper_max_dialog_turns: int = Field(
        default=6, ge=2, description="Longest dialog built from a reply chain (turns, the reply included)."
    )
    scraper_lowercase: bool = Field(default=True, description="Lower-case dialog turns (as the seed did).")
    scraper_drop_quotes: bool = Field(
        default=False, description="Drop `>quoted` lines from posts (kept by default: greentext is the style)."
    )
    scraper_interval_min: float = Field(default=10.0, gt=0, description="`run`: minutes between two crawls.")
    scraper_metrics_host: str = Field(default="0.0.0.0", description="`run`: address of the /metrics server.")
    scraper_metrics_port: int = Field(default=9102, ge=0, description="`run`: port of /metrics (0: off).")
    toxicity_model: Annotated[str, CliOption("--model")] = Field(
        default="sismetanin/rubert-toxic-pikabu-2ch",
        description="Any AutoModelForSequenceClassification (hub name or folder) scoring the reply turn.",
    )
    toxicity_label: str | None = Field(
        default=None,
        description="Name or index of the toxic class; unset: a class named toxic, else 1 - p(non-toxic), "
        "else class 1 of two.",
    )
    toxicity_batch_size: Annotated[int, CliOption("--batch-size")] = Field(
        default=32, ge=1, description="Dialogs scored per batch (and per commit)."
    )
    toxicity_max_tokens: int = Field(default=256, ge=8, description="The reply turn is cut to this many tokens.")
    export_quantile: Annotated[float, CliOption("--quantile")] = Field(
        default=0.75, ge=0, le=1, description="Export keeps dialogs at or above this toxicity quantile."
    )
    export_dir: Annotated[Path | None, CliOption("--out")] = Field(
        default=None, description="Where `export` writes; unset: DATA_DIR/dataset."
    )

    @field_validator("scraper_boards", mode="before")
    @classmethod
    def _boards(cls, value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
        return parse_boards(value)

    @field_validator("dvach_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def export_path(self) -> Path:
        """Where `export` writes: EXPORT_DIR, or DATA_DIR/dataset."""
        return self.export_dir or self.data_dir / "dataset"
