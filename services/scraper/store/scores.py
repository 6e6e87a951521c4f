"""Toxicity scores of the dialogs: what is left to score, storing scores, forgetting them."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, bindparam, func, select, update

from shared.db.models import Dialog

dialogs_t = Dialog.table()


def count_unscored(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(dialogs_t).where(dialogs_t.c.toxicity.is_(None))
        ).scalar_one()


def unscored_batch(engine: Engine, after_id: int, limit: int) -> list[tuple[int, str]]:
    """(id, reply turn) of up to `limit` unscored dialogs with ids above `after_id`, by id."""
    query = (
        select(dialogs_t.c.id, dialogs_t.c.turns[0].astext)
        .where(dialogs_t.c.toxicity.is_(None), dialogs_t.c.id > after_id)
        .order_by(dialogs_t.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(row[0], row[1]) for row in conn.execute(query)]


def set_scores(engine: Engine, scores: Iterable[tuple[int, float]], model: str) -> None:
    """Store toxicity scores (one transaction: a batch is scored or not)."""
    params = [{"dialog_id": dialog_id, "score": float(score), "model": model} for dialog_id, score in scores]
    if params:
        with engine.begin() as conn:
            conn.execute(
                update(dialogs_t)
                .where(dialogs_t.c.id == bindparam("dialog_id"))
                .values(toxicity=bindparam("score"), scored_by=bindparam("model")),
                params,
            )


def clear_scores(engine: Engine, keep_model: str | None = None) -> int:
    """Forget scores (all, or those not given by `keep_model`) so that they are computed again."""
    query = update(dialogs_t).where(dialogs_t.c.toxicity.is_not(None)).values(toxicity=None, scored_by=None)
    if keep_model is not None:
        query = query.where(dialogs_t.c.scored_by.is_distinct_from(keep_model))
    with engine.begin() as conn:
        return conn.execute(query).rowcount
