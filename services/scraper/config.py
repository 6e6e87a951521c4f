"""The scraper's knobs as one immutable object, built from `shared.settings.Settings`.

The crawler, the client and the jobs take a `ScraperConfig` rather than the whole Settings so that
tests can build one directly and nothing reads the environment behind the caller's back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings

_BOARD = re.compile(r"^[a-z0-9_]{1,32}$")


def parse_boards(value: str) -> tuple[str, ...]:
    """`"b, po"` -> `("b", "po")`; board names are checked because they become URL paths."""
    boards = tuple(dict.fromkeys(part.strip().strip("/").lower() for part in value.split(",") if part.strip()))
    if not boards:
        raise ValueError("SCRAPER_BOARDS names no board")
    bad = [board for board in boards if not _BOARD.match(board)]
    if bad:
        raise ValueError(f"SCRAPER_BOARDS has invalid board names: {bad}")
    return boards


@dataclass(frozen=True)
class ScraperConfig:
    base_url: str = "https://2ch.hk"
    boards: tuple[str, ...] = ("b",)
    min_replies: int = 20
    concurrency: int = 2
    delay_s: float = 1.0
    timeout_s: float = 30.0
    max_retries: int = 4
    backoff_s: float = 2.0
    backoff_max_s: float = 120.0
    user_agent: str = "dvach-bot-scraper/0.1"
    max_dialog_turns: int = 6
    lowercase: bool = True
    drop_quotes: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ScraperConfig:
        """The scraper's part of the environment settings."""
        return cls(
            base_url=settings.dvach_base_url.rstrip("/"),
            boards=parse_boards(settings.scraper_boards),
            min_replies=settings.scraper_min_replies,
            concurrency=settings.scraper_concurrency,
            delay_s=settings.scraper_delay_s,
            timeout_s=settings.scraper_timeout_s,
            max_retries=settings.scraper_max_retries,
            backoff_s=settings.scraper_backoff_s,
            backoff_max_s=settings.scraper_backoff_max_s,
            user_agent=settings.scraper_user_agent,
            max_dialog_turns=settings.scraper_max_dialog_turns,
            lowercase=settings.scraper_lowercase,
            drop_quotes=settings.scraper_drop_quotes,
        )


def export_dir(settings: Settings) -> Path:
    """Where `export` writes when no folder is given."""
    return settings.export_dir or settings.data_dir / "dataset"
