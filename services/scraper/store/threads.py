"""Threads, their posts and the dialogs the posts end, written idempotently.

Posts are unique by (board, num) and dialogs by the hash of their turns, and both are inserted
with ON CONFLICT DO NOTHING, so a crawl that runs twice, or again after a crash, adds nothing
twice. A thread is written in one transaction (the thread row, its new posts and the dialogs they
end): after a failure it is all there or none of it is, and since the thread row carries what the
listing said at that fetch, an unfinished thread is fetched again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.scraper.api_models import ListingThread, ParsedThread
from services.scraper.cleaning import Answer, clean_comment
from services.scraper.dialogs import PostNode, build_dialogs
from shared.db.models import Dialog, Post, Thread

threads_t = Thread.table()
posts_t = Post.table()
dialogs_t = Dialog.table()


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
    with engine.begin() as conn:
        _upsert_thread(conn, thread, entry, etag, last_modified)
        added = _insert_new_posts(conn, thread, drop_quotes)
        dialogs_added = _insert_dialogs(conn, thread, added, max_turns, lowercase) if added else 0
    return SaveResult(posts_added=len(added), dialogs_added=dialogs_added)


def _upsert_thread(
    conn: Connection, thread: ParsedThread, entry: ListingThread | None, etag: str | None, last_modified: str | None
) -> None:
    """The thread's row, with what the listing said at this fetch (what tells a changed thread)."""
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
        .values(board=thread.board, num=thread.num, **values)
        .on_conflict_do_update(constraint="uq_threads_board_num", set_=values)
    )


def answers_to_json(answers: tuple[Answer, ...]) -> list[dict]:
    """The `posts.answers` column: the text is kept only for the parts of a post answering several
    people (a single answer is the post's whole text)."""
    if len(answers) == 1:
        return [{"to": list(answers[0].to)}]
    return [{"to": list(answer.to), "text": answer.text} for answer in answers]


def answers_from_json(value: list[dict] | None, text: str) -> tuple[Answer, ...] | None:
    """`answers_to_json` read back; None (a post stored before the column) stays None."""
    if value is None:
        return None
    return tuple(Answer(tuple(item["to"]), item.get("text", text)) for item in value)


def _insert_new_posts(conn: Connection, thread: ParsedThread, drop_quotes: bool) -> list[int]:
    """Clean and insert the posts not stored yet; returns the numbers of those inserted."""
    board, num = thread.board, thread.num
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
                answers=answers_to_json(clean.answers),
                is_usable=clean.usable,
            )
        )
    if not rows:
        return []
    inserted = conn.execute(
        pg_insert(posts_t).on_conflict_do_nothing(constraint="uq_posts_board_num").returning(posts_t.c.num), rows
    )
    return list(inserted.scalars())


def _insert_dialogs(conn: Connection, thread: ParsedThread, added: list[int], max_turns: int, lowercase: bool) -> int:
    """The dialogs that the `added` posts end, built from every stored post of the thread;
    returns how many were new."""
    board, num = thread.board, thread.num
    nodes = {
        row.num: PostNode(
            row.num, row.text, tuple(row.parents), row.is_usable, answers_from_json(row.answers, row.text)
        )
        for row in conn.execute(
            select(posts_t.c.num, posts_t.c.text, posts_t.c.parents, posts_t.c.is_usable, posts_t.c.answers).where(
                posts_t.c.board == board, posts_t.c.thread_num == num
            )
        )
    }
    dialogs = build_dialogs(nodes, added, max_turns=max_turns, lowercase=lowercase)
    if not dialogs:
        return 0
    # Inserted in hash order: two threads sharing a copy-pasta dialog lock it in the same order.
    dialogs.sort(key=lambda d: d.turns_hash)
    rows = [
        dict(
            turns_hash=d.turns_hash,
            turns=list(d.turns),
            post_nums=list(d.post_nums),
            board=board,
            thread_num=num,
            length=len(d.turns),
        )
        for d in dialogs
    ]
    inserted = conn.execute(
        pg_insert(dialogs_t).on_conflict_do_nothing(index_elements=["turns_hash"]).returning(dialogs_t.c.id), rows
    )
    return len(inserted.all())
