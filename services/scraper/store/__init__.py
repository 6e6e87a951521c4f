"""Every read and write of the scraper's tables, one module per kind of record:

- runs.py: `scrape_runs` and the crawl lock;
- threads.py: threads, posts and the dialogs they end, written idempotently;
- scores.py: toxicity scores;
- stats.py: what `stats` and `export` report (the dataset's figures come from shared/db/dataset.py,
  which the gateway and the trainer share);
- errors.py: telling a lost database from a bad statement.
"""

from services.scraper.store.errors import DatabaseUnavailable, is_connection_problem
from services.scraper.store.runs import RunCounts, crawl_lock, finish_run, recent_runs, start_run
from services.scraper.store.scores import clear_scores, count_unscored, set_scores, unscored_batch
from services.scraper.store.stats import database_stats, score_summary, summary_of
from services.scraper.store.threads import (
    SaveResult,
    ThreadState,
    mark_not_modified,
    mark_seen,
    save_thread,
    thread_states,
)

__all__ = [
    "DatabaseUnavailable",
    "RunCounts",
    "SaveResult",
    "ThreadState",
    "clear_scores",
    "count_unscored",
    "crawl_lock",
    "database_stats",
    "finish_run",
    "is_connection_problem",
    "mark_not_modified",
    "mark_seen",
    "recent_runs",
    "save_thread",
    "score_summary",
    "set_scores",
    "start_run",
    "summary_of",
    "thread_states",
    "unscored_batch",
]
