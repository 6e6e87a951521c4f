"""The bot's start-up checks, webhook mode, and a backend that goes away and comes back."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from services.bot import texts
from shared.embedded import free_port
from tests.bot.conftest import make_token
from tests.bot.fake_telegram import FakeTelegram
from tests.processes import REPO


def _start_and_exit(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.bot"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("", "TELEGRAM_BOT_TOKEN is not set"),
        ("12345:short", "TELEGRAM_BOT_TOKEN is malformed"),
        ("not a token at all, with secret-ish text", "TELEGRAM_BOT_TOKEN is malformed"),
    ],
)
def test_missing_or_malformed_token_fails_at_start_with_one_line(service_env, token, expected):
    import os

    result = _start_and_exit({**os.environ, **service_env, "TELEGRAM_BOT_TOKEN": token, "BOT_METRICS_PORT": "0"})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and expected in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    if token:
        assert token not in result.stderr + result.stdout


def test_a_token_telegram_refuses_fails_at_start_with_one_line(service_env):
    import os

    bot_id, token = make_token()
    server = FakeTelegram(token=token, bot_id=bot_id).start()
    try:
        _, other = make_token()  # well-formed, but not the server's: getMe answers 401
        result = _start_and_exit(
            {
                **os.environ,
                **service_env,
                "TELEGRAM_BOT_TOKEN": other,
                "TELEGRAM_API_URL": server.url,
                "BOT_METRICS_PORT": "0",
            }
        )
    finally:
        server.stop()
    assert result.returncode != 0
    assert "Telegram refused TELEGRAM_BOT_TOKEN (401 Unauthorized)" in result.stderr.splitlines()[-1]
    assert other.split(":", 1)[1] not in result.stderr + result.stdout


def test_webhook_mode_refuses_a_wrong_or_missing_secret(start_bot, worker):
    port = free_port()
    secret = "s3cret_" + make_token()[1].split(":", 1)[1][:20]
    running = start_bot(
        {
            "BOT_MODE": "webhook",
            "BOT_WEBHOOK_SECRET": secret,
            "BOT_WEBHOOK_HOST": "127.0.0.1",
            "BOT_WEBHOOK_PORT": str(port),
            "BOT_WEBHOOK_URL": "https://bot.example.org/telegram/webhook",
        }
    )
    tg = running.server
    registered = next(c for c in tg.calls if c.method == "setWebhook")
    assert registered.params["secret_token"] == secret
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    group = tg.group()
    refused = tg.message(group, tg.user(), "меня не пустят", mention=True)
    accepted = tg.message(group, tg.user(), "а меня пустят", mention=True)

    def post(message: dict, update_id: int, headers: dict[str, str]) -> httpx.Response:
        body = json.dumps({"update_id": update_id, "message": message}, ensure_ascii=False)
        return httpx.post(
            url, content=body.encode(), headers={"content-type": "application/json", **headers}, timeout=10
        )

    assert post(refused, 1, {}).status_code == 403
    assert post(refused, 2, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}).status_code == 403
    assert post(refused, 3, {"X-Telegram-Bot-Api-Secret-Token": secret + "x"}).status_code == 403
    assert post(accepted, 4, {"X-Telegram-Bot-Api-Secret-Token": secret}).status_code == 200
    tg.wait_reply(group["id"], accepted["message_id"])
    # The refused update was never looked at: the only reply is to the accepted one.
    assert [c.reply_to for c in tg.sent(group["id"])] == [accepted["message_id"]]
    log = running.process.log_text()
    assert "webhook call refused" in log and secret not in log
    # No polling in webhook mode.
    assert "getUpdates" not in tg.methods()


@pytest.mark.timeout(300)
def test_worker_stopped_apology_once_then_answers_again(start_bot, start_worker, tmp_path):
    """No worker: the bot stays up, apologises once in a private chat (not once per message),
    stays silent in a group; once a worker is back it answers again, and the jobs that expired
    while nobody served them are not answered late."""
    from shared.embedded import RedisServer

    redis = RedisServer(tmp_path / "redis").start()
    try:
        env = {"REDIS_URL": redis.url}
        worker = start_worker(env, node="comeback@test")
        running = start_bot({**env, "REPLY_TIMEOUT_S": "3", "BOT_APOLOGY_INTERVAL_S": "600"})
        tg, bot = running.server, running.process
        user = tg.user()
        chat = tg.private(user)
        first = tg.send_user_message(chat, user, "ты тут?")
        assert tg.wait_reply(chat["id"], first["message_id"]).text != texts.APOLOGY

        worker.stop()

        def unanswered() -> float:
            return sum(bot.metric("dvach_bot_skips_total", reason=r) for r in ("timeout", "backend_down"))

        before = unanswered()
        down = [tg.send_user_message(chat, user, f"ау {i}") for i in range(3)]
        down_ids = {m["message_id"] for m in down}
        # The three wait side by side, so whichever times out first carries the apology.
        apology = tg.wait_for(
            lambda calls: next((c for c in tg.sent(chat["id"]) if c.reply_to in down_ids), None),
            timeout=60,
            what="the apology for one of the three messages",
        )
        assert apology.text == texts.APOLOGY
        group = tg.group()
        mention = tg.send_user_message(group, tg.user(), "а в группе?", mention=True)
        deadline = time.monotonic() + 60
        while unanswered() < before + 4:  # every message of the outage given up on, with its reason
            assert time.monotonic() < deadline, f"only {unanswered() - before} of 4 given up on"
            time.sleep(0.1)  # polling a counter, bounded by the deadline
        assert bot.alive()

        start_worker(env, node="comeback2@test")
        back = tg.send_user_message(chat, user, "а теперь?")
        reply = tg.wait_reply(chat["id"], back["message_id"], timeout=60)
        assert reply.text != texts.APOLOGY
        again = tg.send_user_message(group, tg.user(), "а теперь в группе?", mention=True)
        tg.wait_reply(group["id"], again["message_id"], timeout=60)

        private_replies = [c.reply_to for c in tg.sent(chat["id"])]
        # One apology for three messages; nothing sent for the other two, not even late.
        assert private_replies == [first["message_id"], apology.reply_to, back["message_id"]]
        assert [c.reply_to for c in tg.sent(group["id"])] == [again["message_id"]] != [mention["message_id"]]
    finally:
        redis.stop()
