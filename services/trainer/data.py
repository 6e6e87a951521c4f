"""Where training dialogs come from: the `dialogs` table (toxicity quantile, size limit) or a JSONL.

A dialog travels newest first, as everywhere in the project: `turns[0]` is the reply the model
learns to write, `turns[1:]` its context. The JSONL is the scraper's export format, one
`{"id": ..., "dialogue": [turn, ...]}` per line (extra keys such as `toxicity` are kept).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DialogRecord:
    id: str | int | None
    turns: list[str]  # newest first; turns[0] is the reply
    toxicity: float | None = None

    def to_json(self) -> str:
        row: dict[str, Any] = {"id": self.id, "dialogue": self.turns}
        if self.toxicity is not None:
            row["toxicity"] = self.toxicity
        return json.dumps(row, ensure_ascii=False)


@dataclass
class DialogSource:
    """The dialogs of one run and how they were selected (goes into version.json's `data`)."""

    dialogs: list[DialogRecord]
    description: dict[str, Any] = field(default_factory=dict)


def usable(turns: Iterable[Any]) -> list[str] | None:
    """Stripped turns, or None when there is no reply with at least one turn of context."""
    cleaned = [t.strip() for t in turns if isinstance(t, str)]
    if len(cleaned) < 2 or not all(cleaned):
        return None
    return cleaned


def read_jsonl(path: Path, limit: int | None = None) -> DialogSource:
    """Dialogs from an exported JSONL (first `limit` usable lines); bad lines are counted, not fatal."""
    path = Path(path)
    dialogs: list[DialogRecord] = []
    skipped = 0
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                turns = usable(row["dialogue"])
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable JSONL line skipped", extra={"file": str(path), "line": number})
                skipped += 1
                continue
            if turns is None:
                skipped += 1
                continue
            dialogs.append(DialogRecord(row.get("id", number), turns, row.get("toxicity")))
            if limit is not None and len(dialogs) >= limit:
                break
    return DialogSource(dialogs, {"source": "jsonl", "path": str(path), "limit": limit, "skipped": skipped})


def read_database(database_url: str, quantile: float, limit: int | None = None) -> DialogSource:
    """Dialogs from the `dialogs` table whose toxicity is at or above the `quantile` of scored ones.

    `quantile=0` takes every dialog, scored or not. With a `limit` the most toxic are kept.
    The order (toxicity descending, then id) is deterministic, so the same table gives the same hash.
    """
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from shared.db import make_engine
    from shared.db.models import Dialog

    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            query = select(Dialog.id, Dialog.turns, Dialog.toxicity)
            threshold = None
            if quantile > 0:
                threshold = session.scalar(
                    select(func.percentile_cont(quantile).within_group(Dialog.toxicity.asc())).where(
                        Dialog.toxicity.is_not(None)
                    )
                )
                if threshold is None:
                    raise ValueError("no dialog has a toxicity score yet: score them first, or pass --quantile 0")
                query = query.where(Dialog.toxicity >= threshold)
            query = query.order_by(Dialog.toxicity.desc().nulls_last(), Dialog.id)
            dialogs, skipped = [], 0
            for row in session.execute(query):
                turns = usable(row.turns)
                if turns is None:
                    skipped += 1
                    continue
                dialogs.append(DialogRecord(row.id, turns, row.toxicity))
                if limit is not None and len(dialogs) >= limit:
                    break
    finally:
        engine.dispose()
    description = {
        "source": "database",
        "quantile": quantile,
        "toxicity_threshold": threshold,
        "limit": limit,
        "skipped": skipped,
    }
    return DialogSource(dialogs, description)


def write_jsonl(dialogs: Iterable[DialogRecord], path: Path) -> Path:
    """The snapshot of a run's dialogs, in the scraper's export format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for dialog in dialogs:
            out.write(dialog.to_json() + "\n")
    return path


def iter_jsonl(path: Path) -> Iterator[dict]:
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)
