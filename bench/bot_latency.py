"""Time from a Telegram update to the bot's reply, through the whole chain, with the demo model.

    python -m bench.bot_latency [-n 50] [--at-once 1] [--model DIR]

Everything is a real process on loopback: Redis and PostgreSQL (REDIS_URL / DATABASE_URL when
set, else embedded ones in a temporary folder, as `make run` starts them), one inference worker
(`python -m services.inference_worker`, CTranslate2 int8 by default, the bundled demo model unless
--model is given), the bot (`python -m services.bot`, long polling, production settings), and a
local server that speaks the Telegram Bot API (tests/bot/fake_telegram.py) in place of Telegram.

Each mention is a group message "@bot ..." pushed to the server's getUpdates queue; its latency
runs from that moment to the arrival of the bot's sendMessage that replies to it, so it includes
the long poll handing the update out, the bot's policy and settings lookup, the Redis queue, the
worker's generation, the result coming back and the send. Every mention is in its own group by its
own user, so Telegram's rate limits (20 messages a minute per group) never hold a reply back:
what is measured is the chain, not the limiter. `--at-once N` sends N mentions together and waits
for all N replies before the next wave (default 1: one after another).

Prints the median and p95 over the mentions, and the bot's own update->reply histogram from its
/metrics for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TEXTS = ["привет, анон", "что думаешь о котах?", "двач, как дела?", "ненавижу понедельники", "ты бот?"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bot_histogram(metrics_url: str) -> tuple[float, float]:
    """(count, sum in seconds) of the bot's own update->reply histogram."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    count = total = 0.0
    for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=5).text):
        for sample in family.samples:
            if sample.name == "dvach_bot_update_to_reply_seconds_count":
                count += sample.value
            elif sample.name == "dvach_bot_update_to_reply_seconds_sum":
                total += sample.value
    return count, total


def run(args) -> dict:
    from services.inference_worker.demo_model.build import ensure_demo_model
    from shared.embedded import backing_servers, free_port
    from shared.settings import ServiceSettings
    from tests.bot.conftest import make_token
    from tests.bot.fake_telegram import FakeTelegram
    from tests.processes import ServiceProcess, Worker

    model = args.model or str(ensure_demo_model())
    tmp = Path(tempfile.mkdtemp(prefix="bot-latency-"))
    servers = ExitStack()  # embedded Redis and Postgres unless REDIS_URL / DATABASE_URL are set
    backing = servers.enter_context(backing_servers(ServiceSettings(data_dir=tmp / "data"), migrate_configured=True))
    assert backing.redis_url and backing.database_url  # both were asked for
    base_env = {
        "REDIS_URL": backing.redis_url,
        "DATABASE_URL": backing.database_url,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "DATA_DIR": str(tmp / "data"),
    }
    worker = Worker(
        "bench@botlatency",
        {
            **base_env,
            "MODEL_NAME_OR_PATH": model,
            "INFERENCE_CACHE_DIR": str(tmp / "converted-models"),
            "WORKER_METRICS_PORT": str(free_port()),
        },
        tmp,
    )
    bot_id, token = make_token()
    telegram = FakeTelegram(token=token, bot_id=bot_id).start()
    metrics_port = free_port()
    bot = ServiceProcess(
        "bot",
        [sys.executable, "-m", "services.bot"],
        {
            **base_env,
            "TELEGRAM_BOT_TOKEN": token,
            "TELEGRAM_API_URL": telegram.url,
            "BOT_METRICS_HOST": "127.0.0.1",
            "BOT_METRICS_PORT": str(metrics_port),
        },
        tmp,
    )
    try:
        worker.start()
        worker.wait_ready(timeout=900)
        bot.start()
        telegram.wait_for(
            lambda calls: any(c.method == "getUpdates" for c in calls), timeout=120, what="the bot polling"
        )

        def mention(i: int) -> tuple[dict, float]:
            group = telegram.group(title=f"bench {i}")
            message = telegram.message(group, telegram.user(name=f"anon{i}"), TEXTS[i % len(TEXTS)], mention=True)
            update = telegram.push({"message": message})
            return message, update["_pushed_at"]

        def wait_replies(sent: list[tuple[dict, float]]) -> list[float]:
            took = []
            for message, pushed in sent:
                reply = telegram.wait_reply(message["chat"]["id"], message["message_id"], timeout=300)
                took.append((reply.at - pushed) * 1000)
            return took

        wait_replies([mention(-1)])  # warm-up: first job, first settings row, connections
        warm_count, warm_sum = bot_histogram(f"http://127.0.0.1:{metrics_port}/metrics")
        latencies: list[float] = []
        started = time.perf_counter()
        i = 0
        while i < args.n:
            wave = [mention(i + k) for k in range(min(args.at_once, args.n - i))]
            latencies += wait_replies(wave)
            i += len(wave)
        wall = time.perf_counter() - started
        count, total = bot_histogram(f"http://127.0.0.1:{metrics_port}/metrics")
        replies = [c for c in telegram.sent() if c.text]
        return {
            "n": args.n,
            "at_once": args.at_once,
            "model": model,
            "latencies_ms": latencies,
            "wall_s": wall,
            "bot_mean_ms": (total - warm_sum) / max(1.0, count - warm_count) * 1000,
            "replies": len(replies),
            "example": replies[-1].text if replies else "",
        }
    finally:
        bot.stop()
        worker.stop(timeout=60)
        telegram.stop()
        servers.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=50, help="mentions to measure (after one warm-up)")
    parser.add_argument("--at-once", type=int, default=1, help="mentions sent together per wave")
    parser.add_argument("--model", help="model folder or hub name (default: the bundled demo model)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    lat = result["latencies_ms"]
    print(
        f"model {result['model']}; {result['n']} mentions, {result['at_once']} at a time, "
        f"each in its own group; {result['replies']} replies sent (incl. warm-up)"
    )
    print(
        f"update -> reply  median {statistics.median(lat):.0f} ms  p95 {percentile(lat, 0.95):.0f} ms  "
        f"min {min(lat):.0f} ms  max {max(lat):.0f} ms"
    )
    print(f"the bot's own histogram (update handled -> reply sent) mean {result['bot_mean_ms']:.0f} ms")
    print(f"throughput {result['n'] / result['wall_s']:.1f} replies/s; last reply: {result['example']!r}")


if __name__ == "__main__":
    main()
