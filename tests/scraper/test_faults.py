"""The site misbehaving: 500, 429, bodies cut short, connections dropped, wrong types, garbage.
Each fault is retried or the thread is skipped, and the run completes."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY
from sqlalchemy import text

from tests.scraper.conftest import PO_THREADS, crawl, make_config
from tests.scraper.fixtures import post, thread_json

GOOD = 8071880  # PO_THREADS[1], 131 posts
OTHER = 8058183  # PO_THREADS[0], 208 posts


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


async def test_500_429_cut_and_truncated_bodies_are_retried(engine, dvach, recorded_dir):
    dvach.serve_thread("po", recorded_dir / PO_THREADS[1])
    path = f"/po/res/{GOOD}.json"
    dvach.fail("/po/catalog.json", "500")
    dvach.fail(path, "500", "429", "truncate", "cut")
    before = {s: metric("dvach_scraper_http_requests_total", status=s) for s in ("500", "429", "error", "200")}
    report = await crawl(engine, make_config(dvach, boards=("po",), max_retries=4))
    assert report.status == "finished" and report.counts.errors == 0
    assert report.counts.threads_fetched == 1 and report.counts.posts_added == 131
    assert dvach.paths_requested(path) == [path] * 5
    assert metric("dvach_scraper_http_requests_total", status="500") - before["500"] == 2
    assert metric("dvach_scraper_http_requests_total", status="429") - before["429"] == 1
    assert metric("dvach_scraper_http_requests_total", status="error") - before["error"] == 1  # the cut body
    assert metric("dvach_scraper_http_requests_total", status="200") - before["200"] == 3  # truncate, catalog, thread


async def test_a_thread_that_keeps_failing_is_skipped_and_fetched_next_run(engine, dvach, recorded_dir):
    dvach.serve_thread("po", recorded_dir / PO_THREADS[0])
    dvach.serve_thread("po", recorded_dir / PO_THREADS[1])
    dvach.fail(f"/po/res/{GOOD}.json", *["truncate"] * 10)
    config = make_config(dvach, boards=("po",), max_retries=2)
    errors_before = metric("dvach_scraper_errors_total", kind="malformed")
    report = await crawl(engine, config)
    assert report.status == "finished"
    assert (report.counts.threads_fetched, report.counts.threads_failed, report.counts.errors) == (1, 1, 1)
    assert "invalid JSON" in report.errors[0] and f"{GOOD}.json" in report.errors[0]
    assert metric("dvach_scraper_errors_total", kind="malformed") - errors_before == 1
    assert len(dvach.paths_requested(f"/po/res/{GOOD}.json")) == 3
    # Nothing of the failed thread was written, so the next run takes it up again.
    assert count(engine, f"SELECT count(*) FROM threads WHERE num = {GOOD}") == 0
    assert count(engine, f"SELECT count(*) FROM posts WHERE thread_num = {OTHER}") == 208
    with engine.connect() as conn:
        run = conn.execute(text("SELECT status, errors, threads_failed, error_messages FROM scrape_runs")).one()
    assert (run.status, run.errors, run.threads_failed) == ("finished", 1, 1) and "invalid JSON" in run.error_messages[
        0
    ]

    dvach.clear_faults()
    again = await crawl(engine, config)
    assert (again.counts.threads_fetched, again.counts.posts_added, again.counts.threads_unchanged) == (1, 131, 1)


async def test_wrong_types_and_garbage_threads_are_skipped_with_a_clear_error(engine, dvach, recorded_dir):
    dvach.serve_thread("po", recorded_dir / PO_THREADS[1])
    bad = {
        901: json.dumps({"threads": [{"posts": "oops"}]}).encode(),
        902: json.dumps({"threads": {"posts": []}}).encode(),
        903: json.dumps([1, 2, 3]).encode(),
        904: thread_json("po", [post(999, 999, "the opening post of another thread")]),
        905: b"<html><body>Cloudflare says hi</body></html>",
        906: json.dumps({"threads": [{"posts": [{"num": "abc", "comment": 5}]}]}).encode(),
    }
    for num, raw in bad.items():
        dvach.serve_thread("po", raw, num=num, posts_count=50)
    # One post with wrong types inside a good thread: that post is skipped, the thread is kept.
    posts = [post(950, 950, "оп"), post(951, 950, "ответ"), {**post(952, 950, "x"), "num": [952]}]
    dvach.serve_thread("po", thread_json("po", posts), posts_count=30)

    report = await crawl(engine, make_config(dvach, boards=("po",), max_retries=1))
    assert report.status == "finished"
    assert report.counts.threads_fetched == 2 and report.counts.threads_failed == len(bad)
    for num in bad:
        assert any(f"/po/res/{num}.json" in message for message in report.errors), num
    assert any("post #2" in message and "950" in message for message in report.errors)
    assert count(engine, "SELECT count(*) FROM posts WHERE thread_num = 950") == 2
    assert count(engine, "SELECT count(*) FROM threads") == 2


async def test_other_statuses_are_not_retried_and_a_dead_listing_fails_the_run(engine, dvach, recorded_dir):
    dvach.serve_thread("po", recorded_dir / PO_THREADS[1])
    dvach.fail("/po/catalog.json", *["500"] * 5)
    report = await crawl(engine, make_config(dvach, boards=("po",), max_retries=2))
    assert report.status == "failed" and report.counts.errors == 1 and "HTTP 500" in report.errors[0]
    assert len(dvach.paths_requested("/po/catalog.json")) == 3
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM scrape_runs")).scalar_one() == "failed"

    dvach.clear_faults()
    dvach.fail(f"/po/res/{GOOD}.json", "403")
    report = await crawl(engine, make_config(dvach, boards=("po",), max_retries=3))
    assert report.status == "finished" and report.counts.threads_failed == 1 and "HTTP 403" in report.errors[0]
    assert len(dvach.paths_requested(f"/po/res/{GOOD}.json")) == 1
