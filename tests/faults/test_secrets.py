"""Secrets never leak: the bot token and the admin token appear in no log line, error body or
metric of the gateway and the worker, whatever is thrown at them. (The dependency audit asks the
outside world: it is `make audit`, tools/audit.py, tested in tests/test_audit.py.)"""

from __future__ import annotations

import httpx

ADMIN_TOKEN = "adm-SECRET-9d1f2e77c0"
BOT_TOKEN = "987654321:AAE-secretSECRETsecretSECRETsecret12"


def test_tokens_never_appear_in_logs_errors_or_metrics(start_worker, start_gateway, redis_url):
    env = {"ADMIN_TOKEN": ADMIN_TOKEN, "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "LOG_LEVEL": "DEBUG"}
    worker = start_worker(env, node="secretive@test")
    gateway = start_gateway(env)
    seen = []
    with httpx.Client(base_url=gateway.base_url, timeout=30) as http:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        seen.append(http.get("/admin/queues", headers=auth))
        seen.append(http.get("/admin/workers", headers=auth))
        seen.append(http.get("/admin/queues", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}))
        seen.append(http.get("/admin/chats/1", headers=auth))  # no database: an error path
        # Secrets inside the input: they are the caller's own, but must not be logged back either.
        seen.append(
            http.post("/v1/replies", json={"dialog": [f"мой токен {BOT_TOKEN}"], "params": {"max_new_tokens": 4}})
        )
        seen.append(http.post("/v1/replies", json={"dialog": [BOT_TOKEN * 200]}))
        seen.append(http.get("/metrics"))
        seen.append(http.get("/openapi.json"))
    for response in seen:
        assert ADMIN_TOKEN not in response.text and BOT_TOKEN not in response.text, response.request.url
    gateway.stop()
    worker.stop()
    logs = gateway.log_text() + worker.log_text()
    assert logs.count("\n") > 10  # there was something to grep
    for secret in (ADMIN_TOKEN, BOT_TOKEN, BOT_TOKEN.split(":")[1]):
        assert secret not in logs
