"""Read-side queries over the scraped dataset, one home for what several services ask of it:
the scraper (`stats`, `export`), the trainer (its training data) and the gateway (admin).

Each function takes a SQLAlchemy `Connection` or `Session` (the gateway passes its async
session's sync side through `AsyncSession.run_sync`), so the same SQL serves every caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, Select, func, select
from sqlalchemy.orm import Session

from shared.db.models import Dialog, Post, Thread
from shared.dialog_jsonl import DialogLine

# Quantiles of the toxicity scores that statistics show, and the histogram's bins over [0, 1].
QUANTILE_LEVELS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
HISTOGRAM_BINS = 10

_SCORED = Dialog.toxicity.is_not(None)


def toxicity_threshold(db: Connection | Session, quantile: float) -> float | None:
    """The `quantile` of the scores (linear interpolation, like numpy), None when none is scored."""
    return db.scalar(select(func.percentile_cont(quantile).within_group(Dialog.toxicity)).where(_SCORED))


def selected_dialogs(threshold: float | None, *, most_toxic_first: bool = False) -> Select:
    """The dialogs at or above `threshold` (None: every dialog, scored or not), by id or most toxic
    first (then by id), with what a JSONL line holds."""
    query = select(Dialog.id, Dialog.turns, Dialog.toxicity, Dialog.board, Dialog.thread_num, Dialog.post_nums)
    if threshold is not None:
        query = query.where(Dialog.toxicity >= threshold)
    order = (Dialog.toxicity.desc().nulls_last(), Dialog.id) if most_toxic_first else (Dialog.id,)
    return query.order_by(*order)


def dialog_lines(db: Connection | Session, query: Select) -> Iterator[DialogLine]:
    """The rows of `selected_dialogs` as JSONL lines, streamed."""
    for row in db.execute(query.execution_options(yield_per=2000)):
        yield DialogLine(
            id=row.id,
            dialogue=row.turns,
            toxicity=row.toxicity,
            board=row.board,
            thread_num=row.thread_num,
            post_nums=row.post_nums,
        )


@dataclass(frozen=True)
class TableCounts:
    threads: int
    posts: int
    usable_posts: int
    dialogs: int
    scored_dialogs: int


def table_counts(db: Connection | Session) -> TableCounts:
    """How much the scraper has stored."""
    row = db.execute(
        select(
            select(func.count()).select_from(Thread).scalar_subquery(),
            select(func.count()).select_from(Post).scalar_subquery(),
            select(func.count()).select_from(Post).where(Post.is_usable).scalar_subquery(),
            select(func.count()).select_from(Dialog).scalar_subquery(),
            select(func.count()).select_from(Dialog).where(_SCORED).scalar_subquery(),
        )
    ).one()
    return TableCounts(*row)


@dataclass(frozen=True)
class DatasetStats:
    """Dialogs by length and how their toxicity scores are spread."""

    dialogs: int
    scored: int
    by_length: dict[int, int]  # turns -> dialogs
    quantiles: dict[float, float | None]  # QUANTILE_LEVELS -> score (None when nothing is scored)
    histogram: list[int]  # dialogs per bin: [0, 0.1), [0.1, 0.2), ... [0.9, 1.0]

    def bins(self) -> Iterator[tuple[float, float, int]]:
        """(from, to, dialogs) of each histogram bin."""
        for i, count in enumerate(self.histogram):
            yield i / HISTOGRAM_BINS, (i + 1) / HISTOGRAM_BINS, count


def dataset_stats(db: Connection | Session) -> DatasetStats:
    """Counts, lengths, quantiles and the histogram of the `dialogs` table."""
    dialogs = db.scalar(select(func.count()).select_from(Dialog)) or 0
    scored = db.scalar(select(func.count()).select_from(Dialog).where(_SCORED)) or 0
    by_length = dict(
        db.execute(select(Dialog.length, func.count()).group_by(Dialog.length).order_by(Dialog.length)).all()
    )
    values = db.execute(
        select(*[func.percentile_cont(level).within_group(Dialog.toxicity) for level in QUANTILE_LEVELS]).where(_SCORED)
    ).one()
    # A score of exactly 1.0 belongs to the last bin.
    bucket = func.least(func.width_bucket(Dialog.toxicity, 0.0, 1.0, HISTOGRAM_BINS), HISTOGRAM_BINS)
    counts: dict[int, int] = dict(db.execute(select(bucket, func.count()).where(_SCORED).group_by(bucket)).all())
    return DatasetStats(
        dialogs=dialogs,
        scored=scored,
        by_length=by_length,
        quantiles=dict(zip(QUANTILE_LEVELS, values, strict=True)),
        histogram=[int(counts.get(b, 0)) for b in range(1, HISTOGRAM_BINS + 1)],
    )
