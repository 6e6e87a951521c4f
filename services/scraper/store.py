"""Every read and write of the scraper's tables (threads, posts, dialogs, scrape_runs).

Writes are idempotent: posts are unique by (board, num) and dialogs by the hash of their turns,
and both are inserted with ON CONFLICT DO NOTHING, so a crawl that runs twice, or again after a
crash, adds nothing twice. A thread is written in one transaction (the thread row, its new posts
and the dialogs they end): after a failure it is all there or none of it is, and since the
thread row carries what the listing said at that fetch, an unfinished thread is fetched again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from sqlalchemy import Engine, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from services.scraper.api_models import ListingThread, ParsedThread
from services.scraper.cleaning import clean_comment
from services.scraper.dialogs import PostNode, build_dialogs
from shared.db.models import Dialog, Post, ScrapeRun, Thread

threads_t = Thread.__table__
posts_t = Post.__table__
dialogs_t = Dialog.__table__
runs_t = ScrapeRun.__table__

# Any 64-bit number: one crawl at a time holds it (pg_try_advisory_lock).
CRAWL_LOCK_KEY = 0x2C4_5C_4A9E
MAX_ERROR_MESSAGES = 100


class DatabaseUnavailable(RuntimeError):
    """Postgres cannot be reached (stopped, restarting, network): the run cannot go on."""


def is_connection_problem(exc: BaseException) -> bool:
    """True when a database error means "the server is gone", not "this statement is wrong"."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        sqlstate = getattr(orig, "sqlstate", None) or ""
        # Class 40 (deadlock, serialization) is an OperationalError too, but the server is fine.
        return isinstance(orig, (psycopg.OperationalError, psycopg.InterfaceError)) and not sqlstate.startswith("40")
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


@contextmanager
def crawl_lock(engine: Engine) -> Iterator[bool]:
    """Hold the crawl lock for the block; yields False when another crawl holds it."""
    conn = engine.connect()
    got = False
    try:
        got = bool(conn.execute(select(func.pg_try_advisory_lock(CRAWL_LOCK_KEY))).scalar())
        conn.commit()
        yield got
    finally:
        try:
            if got:
                conn.execute(select(func.pg_advisory_unlock(CRAWL_LOCK_KEY)))
                conn.commit()
        except Exception:  # noqa: BLE001 - the server may be gone; the lock went with the session
            pass
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass


# --- runs -----------------------------------------------------------------------------------


@dataclass
class RunCounts:
    threads_seen: int = 0
    threads_fetched: int = 0
    threads_unchanged: int = 0
    threads_failed: int = 0
    posts_added: int = 0
    dialogs_added: int = 0
    errors: int = 0


def start_run(engine: Engine, boards: Iterable[str], kind: str = "crawl") -> int:
    """Record a new run. A crawl (which holds the crawl lock) marks crawls still `running` as
    interrupted: their process died without recording its end."""
    with engine.begin() as conn:
        if kind == "crawl":
            conn.execute(
                update(runs_t)
                .where(runs_t.c.status == "running", runs_t.c.kind == "crawl")
                .values(status="interrupted", finished_at=func.now())
            )
        return conn.execute(
            pg_insert(runs_t).values(kind=kind, boards=list(boards), error_messages=[]).returning(runs_t.c.id)
        ).scalar_one()


def finish_run(
    engine: Engine, run_id: int, counts: RunCounts, messages: list[str], status: str, details: dict | None = None
) -> None:
    """Record how a run ended."""
    with engine.begin() as conn:
        conn.execute(
            update(runs_t)
            .where(runs_t.c.id == run_id)
            .values(
                status=status,
                finished_at=func.now(),
                error_messages=[m[:500] for m in messages[:MAX_ERROR_MESSAGES]],
                details=details,
                **vars(counts),
            )
        )


def recent_runs(engine: Engine, limit: int = 5) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(runs_t).order_by(runs_t.c.id.desc()).limit(limit)).mappings().all()
    return [dict(row) for row in rows]


# --- threads and posts ----------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadState:
    posts_count: int
    lasthit: int | None
    etag: str | None
    last_modified: str | None

    def unchanged(self, entry: ListingThread) -> bool:
        """The listing shows what it showed when the thread was last stored."""
        if entry.posts_count != self.posts_count:
            return False
        return entry.lasthit is None or entry.lasthit == self.lasthit


def thread_states(engine: Engine, board: str, nums: Iterable[int]) -> dict[int, ThreadState]:
    """What was stored about these threads of `board` (threads never stored are missing)."""
    nums = list(nums)
    if not nums:
        return {}
    query = select(
        threads_t.c.num, threads_t.c.posts_count, threads_t.c.lasthit, threads_t.c.etag, threads_t.c.last_modified
    ).where(threads_t.c.board == board, threads_t.c.num.in_(nums))
    with engine.connect() as conn:
        return {
            row.num: ThreadState(row.posts_count, row.lasthit, row.etag, row.last_modified)
            for row in conn.execute(query)
        }


def mark_seen(engine: Engine, board: str, nums: Iterable[int]) -> None:
    """The stored threads among `nums` are still on the board."""
    nums = list(nums)
    if nums:
        with engine.begin() as conn:
            conn.execute(
                update(threads_t)
                .where(threads_t.c.board == board, threads_t.c.num.in_(nums))
                .values(last_seen_at=func.now())
            )


def mark_not_modified(engine: Engine, board: str, entry: ListingThread) -> None:
    """A 304 for a stored thread: remember the listing's figures so that it is not asked again."""
    with engine.begin() as conn:
        conn.execute(
            update(threads_t)
            .where(threads_t.c.board == board, threads_t.c.num == entry.num)
            .values(posts_count=entry.posts_count, lasthit=entry.lasthit, last_fetched_at=func.now())
        )


@dataclass
class SaveResult:
    posts_added: int
    dialogs_added: int


def save_thread(
    engine: Engine,
    thread: ParsedThread,
    entry: ListingThread | None,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    max_turns: int = 6,
    lowercase: bool = True,
    drop_quotes: bool = False,
) -> SaveResult:
    """Store a fetched thread in one transaction: its row, its new posts, the dialogs they end."""
    board, num = thread.board, thread.num
    with engine.begin() as conn:
        values = dict(
            subject=thread.subject or None,
            posts_count=entry.posts_count if entry else max(len(thread.posts) - 1, 0),
            lasthit=entry.lasthit if entry else None,
            last_post_num=max(post.num for post in thread.posts),
            etag=etag,
            last_modified=last_modified,
            last_seen_at=func.now(),
            last_fetched_at=func.now(),
        )
        conn.execute(
            pg_insert(threads_t)
            .values(board=board, num=num, **values)
            .on_conflict_do_update(constraint="uq_threads_board_num", set_=values)
        )
        known = set(
            conn.execute(select(posts_t.c.num).where(posts_t.c.board == board, posts_t.c.thread_num == num)).scalars()
        )
        rows = []
        for post in thread.posts:
            if post.num in known:
                continue
            clean = clean_comment(post.comment, drop_quotes=drop_quotes)
            rows.append(
                dict(
                    board=board,
                    num=post.num,
                    thread_num=num,
                    timestamp=post.timestamp,
                    raw_html=post.comment,
                    text=clean.text,
                    parents=list(clean.parents),
                    is_usable=clean.usable,
                )
            )
        added: list[int] = []
        if rows:
            added = list(
                conn.execute(
                    pg_insert(posts_t).on_conflict_do_nothing(constraint="uq_posts_board_num").returning(posts_t.c.num),
                    rows,
                ).scalars()
            )
        dialogs_added = 0
        if added:
            nodes = {
                row.num: PostNode(row.num, row.text, tuple(row.parents), row.is_usable)
                for row in conn.execute(
                    select(posts_t.c.num, posts_t.c.text, posts_t.c.parents, posts_t.c.is_usable).where(
                        posts_t.c.board == board, posts_t.c.thread_num == num
                    )
                )
            }
            dialogs = build_dialogs(nodes, added, max_turns=max_turns, lowercase=lowercase)
            # Inserted in hash order: two threads sharing a copy-pasta dialog lock it in the same order.
            dialogs.sort(key=lambda d: d.turns_hash)
            if dialogs:
                dialogs_added = len(
                    conn.execute(
                        pg_insert(dialogs_t)
                        .on_conflict_do_nothing(index_elements=["turns_hash"])
                        .returning(dialogs_t.c.id),
                        [
                            dict(
                                turns_hash=d.turns_hash,
                                turns=list(d.turns),
                                post_nums=list(d.post_nums),
                                board=board,
                                thread_num=num,
                                length=len(d.turns),
                            )
                            for d in dialogs
                        ],
                    ).all()
                )
    return SaveResult(posts_added=len(added), dialogs_added=dialogs_added)


# --- toxicity -------------------------------------------------------------------------------


def count_dialogs(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(dialogs_t)).scalar_one()


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


# --- export and statistics ------------------------------------------------------------------


def toxicity_quantile(engine: Engine, quantile: float) -> float | None:
    """The `quantile` of the scores (linear interpolation, like numpy), None when none is scored."""
    query = select(func.percentile_cont(quantile).within_group(dialogs_t.c.toxicity)).where(
        dialogs_t.c.toxicity.is_not(None)
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def export_rows(engine: Engine, threshold: float) -> Iterator[dict]:
    """Scored dialogs at or above `threshold`, by id, streamed."""
    query = (
        select(
            dialogs_t.c.id,
            dialogs_t.c.board,
            dialogs_t.c.thread_num,
            dialogs_t.c.post_nums,
            dialogs_t.c.turns,
            dialogs_t.c.toxicity,
        )
        .where(dialogs_t.c.toxicity >= threshold)
        .order_by(dialogs_t.c.id)
    )
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=2000).execute(query).mappings():
            yield dict(row)


def score_summary(engine: Engine) -> dict:
    """How the scores are spread: count, quantiles and a 10-bin histogram over [0, 1]."""
    with engine.connect() as conn:
        scored = conn.execute(
            select(func.count()).select_from(dialogs_t).where(dialogs_t.c.toxicity.is_not(None))
        ).scalar_one()
        if not scored:
            return {"scored": 0}
        points = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
        values = conn.execute(
            text(
                "SELECT percentile_cont(CAST(:points AS float8[])) WITHIN GROUP (ORDER BY toxicity) "
                "FROM dialogs WHERE toxicity IS NOT NULL"
            ),
            {"points": points},
        ).scalar_one()
        bins = dict(
            conn.execute(
                text(
                    "SELECT least(width_bucket(toxicity, 0, 1, 10), 10) AS bin, count(*) FROM dialogs "
                    "WHERE toxicity IS NOT NULL GROUP BY bin ORDER BY bin"
                )
            ).all()
        )
    return {
        "scored": scored,
        "quantiles": {f"p{round(p * 100)}": round(v, 4) for p, v in zip(points, values)},
        "histogram": {f"{(b - 1) / 10:.1f}-{b / 10:.1f}": bins.get(b, 0) for b in range(1, 11)},
    }


def database_stats(engine: Engine) -> dict:
    """Counts of the scraper's tables, dialog lengths and how many reply links found their parent."""
    with engine.connect() as conn:
        counts = (
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM threads) AS threads, (SELECT count(*) FROM posts) AS posts, "
                    "(SELECT count(*) FROM posts WHERE is_usable) AS usable_posts, "
                    "(SELECT count(*) FROM dialogs) AS dialogs, "
                    "(SELECT count(*) FROM dialogs WHERE toxicity IS NOT NULL) AS scored_dialogs"
                )
            )
            .mappings()
            .one()
        )
        lengths = dict(
            conn.execute(
                select(dialogs_t.c.length, func.count()).group_by(dialogs_t.c.length).order_by(dialogs_t.c.length)
            ).all()
        )
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
    dialogs = counts["dialogs"]
    return {
        **counts,
        "dialog_lengths": lengths,
        "mean_dialog_length": round(sum(k * v for k, v in lengths.items()) / dialogs, 3) if dialogs else None,
        "reply_links": links["links"],
        "reply_links_resolved": links["resolved"],
        "reply_links_resolved_share": round(links["resolved"] / links["links"], 4) if links["links"] else None,
    }
