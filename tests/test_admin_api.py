"""The gateway's admin API against real Redis, Postgres and a real worker."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid

import httpx
import pytest
import redis
from sqlalchemy import delete
from sqlalchemy.orm import Session

from shared.celery_app import QUEUE_INTERACTIVE, create_celery_app
from shared.db import make_engine
from shared.db.models import ChatSettings, Dialog, Post, ScrapeRun, Thread
from shared.generation_client import GenerationClient, JobFailed
from shared.schemas import TASK_NAME
from shared.scrape_requests import CRAWL_REQUESTS_KEY
from shared.settings import QueueSettings

TOKEN = "admin-test-token-5f2c9a"


@pytest.fixture(scope="module")
def admin_gateway(start_gateway, worker):
    return start_gateway({"ADMIN_TOKEN": TOKEN})


@pytest.fixture(scope="module")
def admin(admin_gateway):
    with httpx.Client(base_url=admin_gateway.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def db(database_url):
    engine = make_engine(database_url)
    with Session(engine) as session:
        yield session
    engine.dispose()


ADMIN_GETS = [
    "/admin/queues",
    "/admin/workers",
    "/admin/failures",
    "/admin/choices",
    "/admin/chats",
    "/admin/scraper",
    "/admin/scraper/runs",
    "/admin/dataset",
]


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_admin_requires_the_token(admin_gateway, path):
    anonymous = httpx.get(admin_gateway.base_url + path, timeout=10)
    assert anonymous.status_code == 401
    wrong = httpx.get(admin_gateway.base_url + path, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_admin_page_is_served_whole(admin_gateway):
    page = httpx.get(admin_gateway.base_url + "/admin/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>dvach-bot" in page.text and page.text.rstrip().endswith("</html>")


def test_admin_is_off_without_a_configured_token(gateway):
    response = httpx.get(gateway.base_url + "/admin/queues", headers={"Authorization": "Bearer x"}, timeout=10)
    assert response.status_code == 403
    assert "ADMIN_TOKEN" in response.json()["detail"]


def test_token_check_timing_does_not_depend_on_the_guess(admin_gateway):
    """A guess sharing a long prefix with the token is not answered measurably slower. The two
    guesses alternate, so that whatever else loads the machine weighs on both alike."""
    guesses = {"far": "x" * len(TOKEN), "near": TOKEN[:-1] + "x"}
    samples: dict[str, list[float]] = {name: [] for name in guesses}
    with httpx.Client(base_url=admin_gateway.base_url, timeout=30) as http:
        for _ in range(40):
            for name, token in guesses.items():
                started = time.perf_counter()
                assert http.get("/admin/queues", headers={"Authorization": f"Bearer {token}"}).status_code == 401
                samples[name].append(time.perf_counter() - started)
    far, near = statistics.median(samples["far"]), statistics.median(samples["near"])
    # Both go through the same constant-time digest comparison: within noise of each other.
    assert abs(near - far) < max(far, near) * 0.5


def test_queue_depths(admin):
    body = admin.get("/admin/queues").json()
    assert set(body["queues"]) == {"generate.interactive", "generate.bulk"}
    assert all(isinstance(n, int) and n >= 0 for n in body["queues"].values())


def test_workers_lists_the_running_worker(admin):
    admin.post("/v1/replies", json={"dialog": ["посчитай меня"], "params": {"max_new_tokens": 4}}).raise_for_status()
    workers = {w["name"]: w for w in admin.get("/admin/workers").json()}
    assert workers["shared@test"]["online"] is True
    assert workers["shared@test"]["processed"] >= 1
    assert workers["shared@test"]["model_version"]


def test_chats_list_show_update_mute(admin, db):
    db.execute(delete(ChatSettings))
    db.add_all(
        [
            ChatSettings(chat_id=-100, title="Двачеры", chat_type="supergroup"),
            ChatSettings(chat_id=42, title=None, chat_type="private"),
        ]
    )
    db.commit()
    chats = admin.get("/admin/chats").json()
    assert {c["chat_id"] for c in chats} == {-100, 42}
    assert admin.get("/admin/chats/-100").json()["reply_chance"] == pytest.approx(0.1)
    assert admin.get("/admin/chats/7").status_code == 404

    changed = admin.patch("/admin/chats/-100", json={"reply_chance": 0.5, "cooldown_s": 10}).json()
    assert changed["reply_chance"] == 0.5 and changed["cooldown_s"] == 10
    assert admin.patch("/admin/chats/-100", json={"reply_chance": 2}).status_code == 422
    assert admin.get("/admin/chats/-100").json()["tone"] == "normal"
    assert admin.patch("/admin/chats/-100", json={"tone": "sharp"}).json()["tone"] == "sharp"
    assert admin.patch("/admin/chats/-100", json={"tone": "злобно"}).status_code == 422
    assert admin.post("/admin/chats/-100/mute").json()["muted"] is True
    db.expire_all()
    assert db.get(ChatSettings, -100).muted is True  # the table the bot reads
    assert admin.post("/admin/chats/-100/unmute").json()["muted"] is False


def test_chats_show_their_state_and_a_migrated_group_under_its_new_id_only(admin, db):
    db.execute(delete(ChatSettings))
    db.add_all(
        [
            ChatSettings(chat_id=-4001, title="Была группа", chat_type="group", state="migrated", migrated_to=-1004001),
            ChatSettings(chat_id=-1004001, title="Была группа", chat_type="supergroup", migrated_from=-4001),
            ChatSettings(chat_id=43, chat_type="private", state="inactive", state_reason="blocked"),
        ]
    )
    db.commit()
    chats = {c["chat_id"]: c for c in admin.get("/admin/chats").json()}
    assert set(chats) == {-1004001, 43}
    assert (chats[-1004001]["state"], chats[-1004001]["migrated_from"]) == ("active", -4001)
    assert (chats[43]["state"], chats[43]["state_reason"]) == ("inactive", "blocked")
    assert [c["chat_id"] for c in admin.get("/admin/chats", params={"state": "migrated"}).json()] == [-4001]
    assert [c["chat_id"] for c in admin.get("/admin/chats", params={"state": "inactive"}).json()] == [43]
    assert admin.get("/admin/chats", params={"state": "gone"}).status_code == 422
    old = admin.get("/admin/chats/-4001")
    assert old.status_code == 404 and "-1004001" in old.json()["detail"]
    assert admin.patch("/admin/chats/-4001", json={"muted": True}).status_code == 404


def test_scraper_and_dataset_stats(admin, db):
    db.execute(delete(Dialog))
    db.execute(delete(Post))
    db.execute(delete(Thread))
    db.execute(delete(ScrapeRun))
    db.add(Thread(board="b", num=1, posts_count=3))
    db.add_all([Post(board="b", num=n, thread_num=1, raw_html="x", text="x") for n in (1, 2, 3)])
    scores = [0.05, 0.15, 0.55, 0.95, None]
    for i, score in enumerate(scores):
        db.add(
            Dialog(
                turns_hash=f"h{i}",
                turns=["a", "b"][:2] + ["c"] * (i % 2),
                post_nums=[1, 2],
                board="b",
                thread_num=1,
                length=2 + i % 2,
                toxicity=score,
            )
        )
    db.add(ScrapeRun(kind="crawl", status="finished", boards=["b"], threads_fetched=1, posts_added=3))
    db.commit()

    stats = admin.get("/admin/scraper").json()
    assert (stats["threads"], stats["posts"], stats["dialogs"], stats["scored_dialogs"]) == (1, 3, 5, 4)
    assert stats["last_run"]["status"] == "finished"
    assert admin.get("/admin/scraper/runs").json()[0]["posts_added"] == 3

    dataset = admin.get("/admin/dataset").json()
    assert dataset["by_length"] == {"2": 3, "3": 2}
    counts = {round(b["from"], 1): b["count"] for b in dataset["toxicity_histogram"]}
    assert counts[0.0] == 1 and counts[0.1] == 1 and counts[0.5] == 1 and counts[0.9] == 1
    assert sum(counts.values()) == 4
    assert dataset["toxicity_quantiles"]["0.5"] == pytest.approx(0.35)


def test_crawl_request_reaches_the_scraper_queue(admin, redis_url):
    r = redis.Redis.from_url(redis_url)
    r.delete(CRAWL_REQUESTS_KEY)
    accepted = admin.post("/admin/scraper/crawl")
    assert accepted.status_code == 202
    queued = json.loads(r.rpop(CRAWL_REQUESTS_KEY))
    assert queued["request_id"] == accepted.json()["request_id"]


def test_openapi_documents_every_admin_endpoint_with_examples(admin):
    spec = admin.get("/openapi.json").json()
    admin_paths = [p for p in spec["paths"] if p.startswith("/admin")]
    assert len(admin_paths) >= 9
    for path in admin_paths:
        for method, operation in spec["paths"][path].items():
            assert operation.get("summary"), f"{method} {path} has no summary"
    schemas = spec["components"]["schemas"]
    for name in ("QueueDepths", "WorkerInfo", "ChatOut", "ChatUpdate", "DatasetStats", "FailedJob"):
        assert "examples" in schemas[name], name


def test_failed_jobs_are_listed_with_their_error(admin, redis_url):
    job_id = uuid.uuid4().hex
    app = create_celery_app(QueueSettings(redis_url=redis_url))
    app.send_task(
        TASK_NAME,
        kwargs={"request_id": job_id, "dialog": ["поздно"], "deadline": time.time() - 1},
        task_id=job_id,
        queue=QUEUE_INTERACTIVE,
    )
    app.close()

    async def wait_failure():
        client = GenerationClient(QueueSettings(redis_url=redis_url))
        try:
            with pytest.raises(JobFailed):
                await client.wait(job_id, 30)
        finally:
            await client.close()

    asyncio.run(wait_failure())
    # Celery stores the result before it sends task_failure, which records the entry: poll briefly.
    deadline = time.monotonic() + 10
    while True:
        failures = {f["job_id"]: f for f in admin.get("/admin/failures").json()}
        if job_id in failures or time.monotonic() > deadline:
            break
    assert failures[job_id]["kind"] == "DeadlineExpired"
    assert failures[job_id]["worker"] == "shared@test"
    assert "deadline" in failures[job_id]["message"]


def test_a_reply_lists_its_candidates_and_the_rerankers_choice(admin):
    reply = admin.post("/v1/replies", json={"dialog": ["привет анон"], "tone": "soft"}, timeout=60).json()
    choice = reply["choice"]
    assert len(choice["candidates"]) == 4 and choice["tone"] == "soft"  # interactive: 4 by default
    assert reply["text"] == choice["candidates"][choice["index"]]["text"]
    recorded = {c["request_id"]: c for c in admin.get("/admin/choices").json()}
    assert recorded[reply["job_id"]]["rule"] == choice["rule"]
    assert recorded[reply["job_id"]]["candidates"] == choice["candidates"]
