"""What `stats` and `export` report: the dataset's figures (shared/db/dataset.py) in the
scraper's shape, and how many reply links found their parent post."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from shared.db.dataset import DatasetStats, dataset_stats, table_counts


def score_summary(engine: Engine) -> dict[str, Any]:
    """How the scores are spread: count, quantiles (`p50`...) and a histogram over [0, 1]."""
    with engine.connect() as conn:
        return summary_of(dataset_stats(conn))


def summary_of(stats: DatasetStats) -> dict[str, Any]:
    """`score_summary` of figures already read."""
    if not stats.scored:
        return {"scored": 0}
    return {
        "scored": stats.scored,
        "quantiles": {
            f"p{round(level * 100)}": round(value, 4) if value is not None else None
            for level, value in stats.quantiles.items()
        },
        "histogram": {f"{low:.1f}-{high:.1f}": count for low, high, count in stats.bins()},
    }


def database_stats(engine: Engine) -> dict[str, Any]:
    """Counts of the scraper's tables, dialog lengths and how many reply links found their parent."""
    with engine.connect() as conn:
        counts = table_counts(conn)
        lengths = dataset_stats(conn).by_length
        links = (
            conn.execute(
                text(
                    "SELECT count(*) AS links, count(parent.num) AS resolved FROM posts p "
                    "CROSS JOIN LATERAL unnest(p.parents) AS link(num) "
                    "LEFT JOIN posts parent ON parent.board = p.board AND parent.num = link.num "
                    "AND parent.thread_num = p.thread_num AND parent.num < p.num"
                )
            )
            .mappings()
            .one()
        )
    dialogs = counts.dialogs
    return {
        "threads": counts.threads,
        "posts": counts.posts,
        "usable_posts": counts.usable_posts,
        "dialogs": dialogs,
        "scored_dialogs": counts.scored_dialogs,
        "dialog_lengths": lengths,
        "mean_dialog_length": round(sum(k * v for k, v in lengths.items()) / dialogs, 3) if dialogs else None,
        "reply_links": links["links"],
        "reply_links_resolved": links["resolved"],
        "reply_links_resolved_share": round(links["resolved"] / links["links"], 4) if links["links"] else None,
    }
