"""The toxicity batch job: score the reply turn of every unscored dialog.

The classifier (which class is toxic, TOXICITY_LABEL) is shared/toxicity.py's `ToxicityScorer`,
shared with the inference worker's reranker. Each batch is committed on its own, so an
interrupted job resumes where it stopped.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from tqdm import tqdm

from services.scraper import metrics, store
from shared.toxicity import ToxicityScorer

log = logging.getLogger(__name__)


def score_dialogs(
    engine: Engine, scorer: ToxicityScorer, *, batch_size: int = 32, limit: int | None = None, progress: bool = True
) -> int:
    """Score unscored dialogs (at most `limit`), a committed batch at a time; returns how many."""
    total = store.count_unscored(engine)
    if limit is not None:
        total = min(total, limit)
    done = 0
    after_id = 0
    with tqdm(total=total, desc="toxicity", unit="dialog", disable=not progress) as bar:
        while done < total:
            batch = store.unscored_batch(engine, after_id, min(batch_size, total - done))
            if not batch:
                break
            scores = scorer.score([reply for _, reply in batch])
            store.set_scores(engine, zip((dialog_id for dialog_id, _ in batch), scores, strict=True), scorer.name)
            metrics.DIALOGS_SCORED.inc(len(batch))
            after_id = batch[-1][0]
            done += len(batch)
            bar.update(len(batch))
    log.info("dialogs scored", extra={"scored": done, "model": scorer.name})
    return done
