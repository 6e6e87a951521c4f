"""Open-loop load: replies arriving one by one at random moments, each scheduler side by side.

    python -m bench.load [--size 355m] [--rates 1,2,4,6,8] [--duration 60] [--ways batch,continuous]
                         [--new-tokens 32] [--prompt-tokens 48] [--lone 6] [--timeout 60]

Group chats do not send bursts: messages arrive one at a time. For each way (INFERENCE_SCHEDULER,
optionally with the int8 graph's cache: `continuous:float16` is INFERENCE_KV_CACHE=float16)
a real worker process (`python -m services.inference_worker`, onnxruntime int8, the machine's
cores) serves the random-weight model of the real architecture (bench/models.py, cached in
var/bench) from a private Redis on loopback. Each way is measured in the same run:
- lone: `--lone` requests one after the other, nothing else running (p50 reply time);
- then for each rate (replies/s, ascending): requests with Poisson arrivals (exponential gaps,
  fixed random seed, the same arrival times for every way) for `--duration` seconds, through the
  generation client (Redis + Celery, as the gateway and the bot send them). A reply's time runs
  from its scheduled arrival to the moment its result was read, so a client that fell behind
  cannot hide queueing. Reported: achieved replies/s (completed / (last completion - start)),
  p50 and p95 reply time, replies lost (timeout or error), the worker's peak resident memory
  (sampled every 0.25 s) and once every reply is back (the cache rows are free again), and the
  machine's load average (other work shares the cores).
Every way has its own Redis and worker, all started first; then each step (the lone requests,
alternating, then each rate) runs for every way in turn before the next, so that the machine's
other work falls on all of them alike. A way stops climbing after a rate whose p95 is above
`--stop-p95` (6 s: saturated), so the run is bounded: at most rates x duration (+ drain) per
way. Prints a markdown table and the ratios; the goal's bound is p95 <= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.inference import DEFAULT_CACHE, PARAMS, bench_dialog, percentile  # noqa: E402

P95_BOUND_S = 2.0


def tree_rss(proc) -> float:
    """Resident memory of a psutil process and its children, MB."""
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1e6


class PeakRss:
    """Peak resident memory of a process tree, sampled in a thread while measuring."""

    def __init__(self, pid: int):
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):  # a child that just exited
                self.peak = max(self.peak, tree_rss(self.proc))
            self._stop.wait(0.25)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


def arrivals(rate: float, duration: float, seed: int) -> list[float]:
    """Poisson arrival times (seconds from the start) at `rate` per second over `duration`."""
    rnd, t, times = random.Random(seed), 0.0, list[float]()
    while True:
        t += rnd.expovariate(rate)
        if t >= duration:
            return times
        times.append(t)


async def run_rate(client, dialog, params, times: list[float], timeout: float) -> dict:
    loop = asyncio.get_running_loop()
    start = loop.time()
    done: list[float] = []
    latencies: list[float] = []
    lost = 0

    async def one(at: float) -> None:
        nonlocal lost
        await asyncio.sleep(max(0.0, start + at - loop.time()))
        try:
            job_id = await client.submit(dialog, params, timeout_s=timeout)
            await client.wait(job_id, timeout)
        except Exception:  # noqa: BLE001  # a timeout or a failed job: counted, the run goes on
            lost += 1
            return
        now = loop.time()
        done.append(now - start)
        latencies.append(now - (start + at))

    await asyncio.gather(*[one(at) for at in times])
    span = max(done) if done else float("nan")
    return {
        "sent": len(times),
        "replies": len(done),
        "lost": lost,
        "achieved": len(done) / span if done else 0.0,
        "p50": percentile(latencies, 0.5) if latencies else float("nan"),
        "p95": percentile(latencies, 0.95) if latencies else float("nan"),
    }


def way_settings(way: str) -> tuple[str, str]:
    """A way's scheduler and key/value cache: "continuous" or "continuous:float16"."""
    scheduler, _, kv_cache = way.partition(":")
    return scheduler, kv_cache or "int8"


def start_worker(way: str, model: Path, redis_url: str, log_dir: Path):
    from shared.embedded import free_port
    from tests.processes import Worker

    scheduler, kv_cache = way_settings(way)
    env = {
        "REDIS_URL": redis_url,
        "MODEL_NAME_OR_PATH": str(model),
        "INFERENCE_BACKEND": "onnxruntime",
        "INFERENCE_SCHEDULER": scheduler,
        "INFERENCE_KV_CACHE": kv_cache,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "TASK_SOFT_TIME_LIMIT_S": "590",
        "TASK_TIME_LIMIT_S": "600",
        "WORKER_METRICS_PORT": str(free_port()),
    }
    worker = Worker(f"load-{scheduler}-{kv_cache}@local", env, log_dir)
    worker.env.pop("DATABASE_URL", None)
    return worker.start()


async def measure(args, model: Path, ways: dict[str, tuple[str, object]]) -> dict[str, dict]:
    """Every way at each step before the next step: the machine's other work falls on all alike."""
    from transformers import AutoTokenizer  # only to build the 48-token dialog

    from shared.generation_client import GenerationClient
    from shared.schemas import GenerationParams
    from shared.settings import QueueSettings

    tokenizer = AutoTokenizer.from_pretrained(model)
    dialog = bench_dialog(
        lambda t: tokenizer.encode(t, add_special_tokens=False), tokenizer.eos_token, args.prompt_tokens
    )
    params = GenerationParams.model_validate({"max_new_tokens": args.new_tokens, **PARAMS})
    clients = {way: GenerationClient(QueueSettings(redis_url=url)) for way, (url, _) in ways.items()}
    results: dict[str, dict] = {way: {"way": way, "rates": [], "lone": []} for way in ways}
    try:
        for client in clients.values():
            for _ in range(2):  # warm-up
                await client.generate(dialog, params, timeout_s=600)
        for _ in range(args.lone):  # alternating, one at a time
            for way, client in clients.items():
                started = time.perf_counter()
                await client.generate(dialog, params, timeout_s=600)
                results[way]["lone"].append(time.perf_counter() - started)
        for way in ways:
            results[way]["lone_p50"] = percentile(results[way]["lone"], 0.5)
            print(f"  {way}: lone request p50 {results[way]['lone_p50']:.2f} s", flush=True)
        climbing = set(ways)
        for i, rate in enumerate(args.rates):
            for way, (_, worker) in ways.items():
                if way not in climbing:
                    continue
                with PeakRss(worker.pid) as rss:  # type: ignore[attr-defined]
                    row = await run_rate(
                        clients[way], dialog, params, arrivals(rate, args.duration, seed=i), args.timeout
                    )
                # after: every reply is back, so the cache rows are free again
                row.update(rate=rate, rss_mb=rss.peak, rss_after_mb=tree_rss(rss.proc), load=os.getloadavg()[0])
                results[way]["rates"].append(row)
                print(
                    f"  {way} {rate:g}/s: {row['achieved']:.2f}/s, p50 {row['p50']:.2f} s, p95 {row['p95']:.2f} s,"
                    f" lost {row['lost']}, rss {row['rss_mb']:.0f} MB (after {row['rss_after_mb']:.0f}),"
                    f" load {row['load']:.2f}",
                    flush=True,
                )
                if not row["p95"] <= args.stop_p95:  # saturated: higher rates only queue more
                    climbing.discard(way)
            if not climbing:
                break
    finally:
        for client in clients.values():
            await client.close()
    return results


def best_rate(result: dict, bound: float = P95_BOUND_S) -> float:
    ok = [r["rate"] for r in result["rates"] if r["p95"] <= bound and r["lost"] == 0]
    return max(ok, default=0.0)


def table(results: list[dict], args) -> str:
    lines = [
        f"Open-loop Poisson arrivals, {args.duration:.0f} s per rate, {args.prompt_tokens}-token prompts, "
        f"{args.new_tokens}-token replies, onnxruntime int8, one worker process"
        f" (INFERENCE_SPIN_WAIT={os.environ.get('INFERENCE_SPIN_WAIT', 'true')}); load average before: {args.uptime}",
        "",
        "| scheduler | offered /s | achieved /s | p50 s | p95 s | lost | worker peak RSS MB | RSS after MB"
        " | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["rates"]:
            lines.append(
                f"| {res['way']} | {r['rate']:g} | {r['achieved']:.2f} | {r['p50']:.2f} | {r['p95']:.2f} | "
                f"{r['lost']} | {r['rss_mb']:.0f} | {r['rss_after_mb']:.0f} | {r['load']:.2f} |"
            )
    lines.append("")
    bounds = sorted({P95_BOUND_S, args.bound})
    lines.append(
        "| scheduler | lone request p50 s | " + " | ".join(f"highest rate with p95 <= {b:g} s" for b in bounds) + " |"
    )
    lines.append("|---|---|" + "---|" * len(bounds))
    for res in results:
        rates = " | ".join(f"{best_rate(res, b):g} /s" for b in bounds)
        lines.append(f"| {res['way']} | {res['lone_p50']:.2f} | {rates} |")
    ways = {res["way"]: res for res in results}
    if "batch" in ways and "continuous" in ways:
        base, new = ways["batch"], ways["continuous"]
        lines.append("")
        for b in bounds:
            if best_rate(base, b):
                ratio = f"{best_rate(new, b) / best_rate(base, b):.2f}x"
            else:  # the batch scheduler met it at no rate measured: say so rather than divide by zero
                ratio = f"batch at no rate measured, continuous up to {best_rate(new, b):g} /s"
            lines.append(f"continuous / batch: highest rate with p95 <= {b:g} s: {ratio} (goal >= 1.5x at 2 s)")
        lines.append(f"continuous / batch: lone request time {new['lone_p50'] / base['lone_p50']:.2f}x (goal <= 1.0x)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["355m", "1.3b"], default="355m")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[1, 2, 4, 6, 8])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals per rate")
    parser.add_argument("--ways", type=lambda s: s.split(","), default=["batch", "continuous"])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=48)
    parser.add_argument("--lone", type=int, default=6, help="lone requests per way (p50 over them)")
    parser.add_argument("--timeout", type=float, default=60.0, help="each request's timeout_s (else lost)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--bound", type=float, default=P95_BOUND_S, help="also report the highest rate with p95 under this (s)"
    )
    parser.add_argument(
        "--stop-p95",
        type=float,
        default=3 * P95_BOUND_S,
        help="a way stops climbing after a rate with a p95 above this",
    )
    args = parser.parse_args()
    args.uptime = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    from bench.models import build_random_gpt2
    from services.inference_worker.conversion import ensure_converted
    from shared.embedded import RedisServer

    print(f"model: random-weight GPT-2 {args.size} (cached in {args.cache_dir})", flush=True)
    model = build_random_gpt2(args.size, args.cache_dir)
    for kv_cache in {way_settings(way)[1] for way in args.ways}:  # once, before the workers start
        ensure_converted(model, "int8", engine="onnxruntime", kv_cache=kv_cache)
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    servers, workers = [], []
    try:
        ways = {}
        for way in args.ways:  # a Redis and a worker each; all started first, then measured in turn
            servers.append(RedisServer(tmp / f"redis-{way.replace(':', '-')}").start())
            workers.append(start_worker(way, model, servers[-1].url, tmp))
            ways[way] = (servers[-1].url, workers[-1])
        for worker in workers:
            worker.wait_ready(timeout=900)
        print("  workers ready; measuring", flush=True)
        by_way = asyncio.run(measure(args, model, ways))
        results = [by_way[way] for way in args.ways]
    finally:
        for worker in workers:
            worker.stop()
        for server in servers:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print()
    print(table(results, args))


if __name__ == "__main__":
    main()
