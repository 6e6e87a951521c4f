"""The commands as an operator runs them: `python -m services.scraper ...` in a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from shared.embedded import free_port
from tests.scraper.conftest import PO_THREADS, RECORDED_DIR
from tests.scraper.tiny_classifier import make_tiny_classifier

REPO = Path(__file__).resolve().parents[2]


def scraper_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRAPER_", "TOXICITY_", "EXPORT_"))}
    env.update(
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONUNBUFFERED="1",
        SCRAPER_DELAY_S="0",
        SCRAPER_BACKOFF_S="0.01",
        **extra,
    )
    return env


def scraper(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.scraper", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_crawl_stats_score_export_bench(db_url, engine, dvach, recorded_dir, tmp_path):
    for name in PO_THREADS[:2]:
        dvach.serve_thread("po", recorded_dir / name)
    env = scraper_env(DATABASE_URL=db_url, DVACH_BASE_URL=dvach.url, SCRAPER_BOARDS="po")

    done = scraper("crawl", "--once", "--no-progress", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["status"], result["threads_fetched"], result["posts_added"]) == ("finished", 2, 208 + 131)
    logs = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    ended = [entry for entry in logs if entry["event"] == "crawl ended"]
    assert ended and ended[0]["posts_added"] == 339 and ended[0]["level"] == "info"

    stats = json.loads(scraper("stats", env=env).stdout)
    with engine.connect() as conn:
        dialogs = conn.execute(text("SELECT count(*) FROM dialogs")).scalar_one()
    assert (stats["posts"], stats["dialogs"], stats["threads"]) == (339, dialogs, 2)
    assert sum(stats["dialog_lengths"].values()) == dialogs
    assert 0.9 < stats["reply_links_resolved_share"] <= 1
    assert stats["runs"][0]["status"] == "finished" and stats["scores"] == {"scored": 0}

    corpus = json.loads((recorded_dir / PO_THREADS[1]).read_bytes())["threads"][0]["posts"]
    model = make_tiny_classifier(tmp_path / "tiny", [p["comment"] for p in corpus])
    scored = scraper("score", "--model", str(model), "--no-progress", env=env)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout) == {"model": str(model), "cleared": 0, "scored": dialogs, "unscored_left": 0}

    exported = scraper("export", "--out", str(tmp_path / "set"), "--quantile", "0.5", env=env)
    assert exported.returncode == 0, exported.stderr
    summary = json.loads(exported.stdout)
    assert summary["dialogs_scored"] == dialogs and dialogs // 2 <= summary["dialogs_exported"] < dialogs
    assert len((tmp_path / "set" / "dialogues.jsonl").read_text().splitlines()) == summary["dialogs_exported"]
    runs = json.loads(scraper("stats", env=env).stdout)["runs"]
    assert [(r["kind"], r["status"]) for r in runs] == [
        ("export", "finished"),
        ("score", "finished"),
        ("crawl", "finished"),
    ]
    assert (
        runs[0]["details"]["dialogs_exported"] == summary["dialogs_exported"]
        and runs[1]["details"]["scored"] == dialogs
    )

    bench = scraper("bench", str(RECORDED_DIR), "--rounds", "1", env=env)
    figures = json.loads(bench.stdout)
    assert figures["threads"] == 6 and figures["posts_per_second"] > 0 and figures["dialogs"] > 1000
    assert sum(figures["dialog_lengths"].values()) == figures["dialogs"]
    assert 0.9 < figures["reply_links_resolved_share"] < 1


def test_crawl_without_a_database_fails_clearly():
    env = scraper_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing", DVACH_BASE_URL="http://127.0.0.1:1")
    done = scraper("crawl", "--once", env=env, timeout=60)
    assert done.returncode == 1
    assert "error: database unavailable" in done.stderr and "Traceback" not in done.stderr


def test_run_crawls_periodically_serves_metrics_and_stops_on_sigterm(db_url, engine, dvach, recorded_dir):
    dvach.serve_thread("po", recorded_dir / PO_THREADS[1])
    port = free_port()
    env = scraper_env(
        DATABASE_URL=db_url,
        DVACH_BASE_URL=dvach.url,
        SCRAPER_BOARDS="po",
        SCRAPER_INTERVAL_MIN="0.005",
        SCRAPER_METRICS_PORT=str(port),
        SCRAPER_METRICS_HOST="127.0.0.1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.scraper", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        finished = 0.0
        deadline = time.monotonic() + 90
        while finished < 2:  # poll the real /metrics until two runs have finished
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no two finished runs in 90 s"
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.TransportError:
                body = ""
            for line in body.splitlines():
                if line.startswith('dvach_scraper_runs_total{status="finished"}'):
                    finished = float(line.split()[-1])
            time.sleep(0.2)  # polling interval, not synchronisation: the loop waits for the condition above
        assert "dvach_scraper_last_run_timestamp_seconds" in body and "dvach_scraper_posts_added_total" in body
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert '"event": "scraper stopped"' in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    with engine.connect() as conn:
        statuses = [row[0] for row in conn.execute(text("SELECT status FROM scrape_runs ORDER BY id"))]
        posts = conn.execute(text("SELECT count(*) FROM posts")).scalar_one()
    assert statuses.count("finished") >= 2 and set(statuses) <= {"finished", "interrupted"}
    assert posts == 131


def _finished_runs(port: int) -> float:
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return 0.0
    return next(
        (
            float(line.split()[-1])
            for line in body.splitlines()
            if line.startswith('dvach_scraper_runs_total{status="finished"}')
        ),
        0.0,
    )


def test_run_crawls_at_once_when_the_admin_api_asks(db_url, dvach, recorded_dir, redis_url):
    """`run` waits on the crawl-request list between scheduled crawls (an hour apart here):
    a request pushed the way POST /admin/scraper/crawl does starts a crawl right away."""
    import json

    import redis

    from shared.scrape_requests import CRAWL_REQUESTS_KEY

    dvach.serve_thread("po", recorded_dir / PO_THREADS[1])
    port = free_port()
    env = scraper_env(
        DATABASE_URL=db_url,
        DVACH_BASE_URL=dvach.url,
        SCRAPER_BOARDS="po",
        REDIS_URL=redis_url,
        SCRAPER_INTERVAL_MIN="60",
        SCRAPER_METRICS_PORT=str(port),
        SCRAPER_METRICS_HOST="127.0.0.1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.scraper", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for expected in (1, 2):
            if expected == 2:
                redis.Redis.from_url(redis_url).lpush(CRAWL_REQUESTS_KEY, json.dumps({"request_id": "test"}))
            deadline = time.monotonic() + 60
            while _finished_runs(port) < expected:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, f"run {expected} did not finish within 60 s"
                time.sleep(0.2)  # polling interval; the loop waits for the condition
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
            raise AssertionError(f"run did not stop within 30 s of SIGTERM; its log ends:\n{stderr[-3000:]}") from None
    assert '"crawl requested through the admin API"' in stderr
