"""Inference speed: the seed's way against the project's worker, measured in one run.

    python -m bench.inference [--size 355m|1.3b] [--requests 8] [--new-tokens 32]    (make bench)

Builds a random-weight GPT-2 of the real architecture (bench/models.py; cached in var/bench),
converts it for the worker's backend, then measures, each way in its own process so that peak
memory is its own:
- the seed's way: transformers float32 `generate`, one request at a time, and one batch of
  `--requests` prompts;
- the worker path: the backend + scheduler the Celery worker runs (INFERENCE_* settings apply),
  one request at a time and `--requests` at once;
- the whole queue: a real Redis, a real worker process (`python -m services.inference_worker`) and
  a real gateway, requests through HTTP (an untimed burst first opens the connections), and through
  the generation client alone (Redis + Celery) to show the queue's own overhead per job (round trip
  minus the worker's generate_ms).
Prompts are `--prompt-tokens` long (48) and ask for `--new-tokens` (32): the seed's way is held to
exactly that many (min_new_tokens); the worker stops at eos as it does in production, which random
weights practically never sample, and tokens/s counts the tokens actually generated. Prints a
table with ratios to the seed's way and the targets of issue 5. The machine is shared: compare
ratios measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / "var" / "bench"
PARAMS = {"temperature": 1.2, "top_k": 10, "top_p": 0.95, "repetition_penalty": 1.2}  # the seed's


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process and its children (MB)."""
    import psutil

    proc = psutil.Process(pid or os.getpid())
    procs = [proc, *proc.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 1e6


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB) since it started.

    Read from VmHWM, not getrusage: Linux carries ru_maxrss over fork and exec, so a child would
    report its parent's peak when that is higher (the 1.3B run showed the seed's 5.9 GB for the worker).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1000
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000


def bench_dialog(encode, eos: str, prompt_tokens: int) -> list[str]:
    """A one-turn dialog whose prompt (shared/prompt.py format) is exactly `prompt_tokens` long."""
    from shared.prompt import build_prompt

    words = ["анон", "скинь", "кота", "двач", "не", "торт", "сажа", "бамп", "пруфы", "где"]
    text = ""
    for i in range(10_000):
        candidate = (text + " " + words[i % len(words)]).strip()
        if len(encode(build_prompt([candidate], lambda t: len(encode(t)), eos, "2"))) > prompt_tokens:
            break
        text = candidate
    # Top up with single letters until the length is exact.
    while len(encode(build_prompt([text], lambda t: len(encode(t)), eos, "2"))) < prompt_tokens:
        text += "а"
    return [text]


# --- children: one way each, in its own process --------------------------------------------------


def child_seed(args) -> dict:
    """transformers float32 generate, as the seed served the model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    from shared.prompt import build_prompt

    dialog = bench_dialog(
        lambda t: tokenizer.encode(t, add_special_tokens=False), tokenizer.eos_token, args.prompt_tokens
    )
    prompt = tokenizer.encode(build_prompt(dialog, lambda t: len(tokenizer.encode(t)), tokenizer.eos_token, "2"))

    def generate(batch: int) -> tuple[float, int]:
        ids = torch.tensor([prompt] * batch)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                pad_token_id=tokenizer.eos_token_id,
                **PARAMS,
            )
        return time.perf_counter() - started, (out.shape[1] - ids.shape[1]) * batch

    generate(1)  # warm-up
    rss_warm = rss_mb()
    single = [generate(1) for _ in range(args.rounds)]
    batched = [generate(args.requests) for _ in range(max(1, args.rounds // 3))]
    return {
        "single_s": [s for s, _ in single],
        "single_tokens": sum(n for _, n in single),
        "batch_s": [s for s, _ in batched],
        "batch_tokens": sum(n for _, n in batched),
        "rss_warm_mb": rss_warm,
        "peak_mb": peak_rss_mb(),
    }


def child_worker(args) -> dict:
    """The worker's own path: backend + Generator + Scheduler, configured by the settings."""
    from services.inference_worker.backends import load_backend
    from services.inference_worker.generation import Generator
    from services.inference_worker.runtime import backend_options, make_scheduler
    from shared.schemas import GenerationParams
    from shared.settings import WorkerSettings as Settings

    settings = Settings(redis_url="redis://unused")
    backend = load_backend(args.backend, Path(args.model), backend_options(settings))
    generator = Generator(backend)
    scheduler = make_scheduler(generator, backend, settings)
    dialog = bench_dialog(backend.encode, backend.eos_token, args.prompt_tokens)
    params = GenerationParams(max_new_tokens=args.new_tokens, **PARAMS)
    scheduler.reply(dialog, params)  # warm-up
    rss_warm = rss_mb()

    single, single_tokens = [], 0
    for _ in range(args.rounds):
        started = time.perf_counter()
        single_tokens += scheduler.reply(dialog, params).new_tokens
        single.append(time.perf_counter() - started)
    per_reply, walls, conc_tokens = [], [], 0
    for _ in range(max(1, args.rounds // 2)):
        started = time.perf_counter()
        futures = [scheduler.submit(dialog, params) for _ in range(args.requests)]
        done = []
        for future in futures:
            conc_tokens += future.result().new_tokens
            done.append(time.perf_counter())
        # A reply's time: from submission to the moment the caller had it.
        per_reply += [end - started for end in done]
        walls.append(max(done) - started)
    return {
        "backend": backend.name,
        "lanes": backend.lanes,
        "threads_per_lane": getattr(backend, "threads_per_lane", None),
        "single_s": single,
        "single_tokens": single_tokens,
        "conc_reply_s": per_reply,
        "conc_wall_s": walls,
        "conc_tokens": conc_tokens,
        "rss_warm_mb": rss_warm,
        "peak_mb": peak_rss_mb(),
    }


def run_child(kind: str, args, extra_env: dict | None = None) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "bench.inference",
        "--child",
        kind,
        "--model",
        str(args.model),
        "--requests",
        str(args.requests),
        "--new-tokens",
        str(args.new_tokens),
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--rounds",
        str(args.rounds),
        "--backend",
        args.backend,
    ]
    print(f"  measuring {kind} ...", flush=True)
    done = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, **(extra_env or {})}, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the whole queue: Redis + worker process + gateway ---------------------------------------------


def measure_queue(args) -> dict:
    from shared.embedded import RedisServer, free_port
    from shared.settings import WorkerSettings
    from tests.processes import Gateway, Worker

    print("  measuring the queue (Redis + worker + gateway) ...", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    redis = RedisServer(tmp / "redis").start()
    env = {
        "REDIS_URL": redis.url,
        "MODEL_NAME_OR_PATH": str(args.model),
        "INFERENCE_BACKEND": args.backend,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "REPLY_TIMEOUT_S": "600",
        "TASK_SOFT_TIME_LIMIT_S": "590",
        "TASK_TIME_LIMIT_S": "600",
        "WORKER_METRICS_PORT": str(free_port()),
    }
    env.pop("DATABASE_URL", None)
    worker = Worker("bench@local", {**env, "LOG_LEVEL": "INFO"}, tmp)
    gateway = Gateway(free_port(), env, tmp)
    try:
        worker.start()
        worker.wait_ready(timeout=900)
        gateway.start()
        gateway.wait_ready()
        result = asyncio.run(_through_client(args, WorkerSettings(redis_url=redis.url)))
        result.update(_through_gateway(args, gateway.base_url, result.pop("dialog")))
        result.update(worker_rss_mb=rss_mb(worker.pid), batch_sizes=_batch_sizes(worker.log_text()))
    finally:
        gateway.stop()
        worker.stop()
        redis.stop()
    return result


async def _through_client(args, settings) -> dict:
    """One request at a time through GenerationClient: reply time, and what is not generation."""
    from transformers import AutoTokenizer  # only to build the same 48-token dialog

    from shared.generation_client import GenerationClient
    from shared.schemas import GenerationParams

    client = GenerationClient(settings)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dialog = bench_dialog(
        lambda t: tokenizer.encode(t, add_special_tokens=False), tokenizer.eos_token, args.prompt_tokens
    )
    params = GenerationParams(max_new_tokens=args.new_tokens, **PARAMS)
    await client.generate(dialog, params, timeout_s=600)  # warm-up
    overhead, single = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        res = await client.generate(dialog, params, timeout_s=600)
        took = time.perf_counter() - started
        single.append(took)
        overhead.append(took * 1000 - res.generate_ms)
    await client.close()
    return {"client_single_s": single, "overhead_ms": overhead, "dialog": dialog}


def _through_gateway(args, base_url: str, dialog: list[str]) -> dict:
    """HTTP through the gateway: one request at a time, then bursts of `args.requests` at once."""
    import httpx

    body = {"dialog": dialog, "params": {"max_new_tokens": args.new_tokens, **PARAMS}, "timeout_s": 300}
    with httpx.Client(base_url=base_url, timeout=600) as http:
        single = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            http.post("/v1/replies", json=body).raise_for_status()
            single.append(time.perf_counter() - started)
        per_reply: list[float] = []
        walls: list[float] = []
        tokens = 0
        # One untimed burst first: it opens the client's connections (new connections made the
        # first burst reach the worker spread over more than the batch wait, e.g. 1 + 3 + 4).
        for timed in [False] + [True] * max(1, args.rounds // 2):
            started = time.perf_counter()
            ends: list[float] = []
            new_tokens: list[int] = []

            def one(ends: list[float] = ends, new_tokens: list[int] = new_tokens) -> None:
                response = http.post("/v1/replies", json=body)
                response.raise_for_status()
                ends.append(time.perf_counter())
                new_tokens.append(response.json()["new_tokens"])

            threads = [threading.Thread(target=one) for _ in range(args.requests)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if timed:
                tokens += sum(new_tokens)
                per_reply += [end - started for end in ends]
                walls.append(max(ends) - started)
    return {"gw_single_s": single, "gw_conc_reply_s": per_reply, "gw_conc_wall_s": walls, "gw_conc_tokens": tokens}


def _batch_sizes(worker_log: str) -> list[int]:
    """Sizes of the batches the worker ran, from its "batch started" log lines."""
    sizes = []
    for line in worker_log.splitlines():
        if '"batch started"' in line:
            with contextlib.suppress(ValueError, KeyError):
                sizes.append(json.loads(line)["size"])
    return sizes


# --- the table -----------------------------------------------------------------------------------


def table(args, seed: dict, ours: dict, queue: dict | None) -> str:
    n, new = args.requests, args.new_tokens
    seed_1_p50 = statistics.median(seed["single_s"])
    seed_1_tps = seed["single_tokens"] / sum(seed["single_s"])
    seed_b_tps = seed["batch_tokens"] / sum(seed["batch_s"])
    our_1_p50 = statistics.median(ours["single_s"])
    our_1_tps = ours["single_tokens"] / sum(ours["single_s"])
    our_c_tps = ours["conc_tokens"] / sum(ours["conc_wall_s"])
    rows = [
        ("seed: transformers fp32 generate", "1", seed_1_tps, seed["single_s"], seed["peak_mb"], 1.0, 1.0),
        (
            f"seed: transformers fp32 generate, batch {n}",
            str(n),
            seed_b_tps,
            seed["batch_s"],
            seed["peak_mb"],
            None,
            1.0,
        ),
        (
            f"worker path: {ours['backend']} ({ours['lanes']} lanes x {ours['threads_per_lane']} threads)",
            "1",
            our_1_tps,
            ours["single_s"],
            ours["peak_mb"],
            seed_1_p50 / our_1_p50,
            our_1_tps / seed_b_tps,
        ),
        (
            f"worker path: {ours['backend']}, {n} at once",
            str(n),
            our_c_tps,
            ours["conc_reply_s"],
            ours["peak_mb"],
            None,
            our_c_tps / seed_b_tps,
        ),
    ]
    if queue:
        gw_1_tps = new / statistics.mean(queue["gw_single_s"])
        gw_c_tps = queue["gw_conc_tokens"] / sum(queue["gw_conc_wall_s"])
        rows += [
            (
                "whole queue: gateway -> Redis -> worker",
                "1",
                gw_1_tps,
                queue["gw_single_s"],
                queue["worker_rss_mb"],
                seed_1_p50 / statistics.median(queue["gw_single_s"]),
                gw_1_tps / seed_b_tps,
            ),
            (
                f"whole queue: gateway -> Redis -> worker, {n} at once",
                str(n),
                gw_c_tps,
                queue["gw_conc_reply_s"],
                queue["worker_rss_mb"],
                None,
                gw_c_tps / seed_b_tps,
            ),
        ]
    lines = [
        f"model: random GPT-2 {args.size} ({args.model}); prompt {args.prompt_tokens} tokens, {new} new tokens; "
        f"{args.rounds} rounds; cores: {len(os.sched_getaffinity(0))}",
        "",
        "| way | at once | tokens/s | reply p50 | reply p95 | peak RSS | reply time vs seed | tokens/s vs seed batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, conc, tps, times, mem, lat_ratio, tps_ratio in rows:
        lines.append(
            f"| {name} | {conc} | {tps:.1f} | {statistics.median(times):.2f} s | {percentile(times, 0.95):.2f} s | "
            f"{mem / 1000:.2f} GB | {'' if lat_ratio is None else f'{lat_ratio:.2f}x shorter'} | "
            f"{'' if tps_ratio is None else f'{tps_ratio:.2f}x'} |"
        )
    lines.append("")
    lines.append("targets (issue 5), as ratios to the seed's way in this run:")
    lines.append(
        f"- one request, time per reply >= 3x shorter: {seed_1_p50 / our_1_p50:.2f}x "
        f"({'met' if seed_1_p50 / our_1_p50 >= 3 else 'NOT met'})"
    )
    lines.append(
        f"- {n} at once, tokens/s >= 4.5x the seed's batch-{n}: {our_c_tps / seed_b_tps:.2f}x "
        f"({'met' if our_c_tps / seed_b_tps >= 4.5 else 'NOT met'})"
    )
    lines.append(
        f"- worker resident memory after warm-up <= 0.9 GB: {ours['rss_warm_mb'] / 1000:.2f} GB "
        f"(worker path), seed's way {seed['rss_warm_mb'] / 1000:.2f} GB"
        + (f", Celery worker process {queue['worker_rss_mb'] / 1000:.2f} GB" if queue else "")
        + f" ({'met' if ours['rss_warm_mb'] <= 900 and (not queue or queue['worker_rss_mb'] <= 900) else 'NOT met'})"
    )
    if queue:
        p50 = statistics.median(queue["overhead_ms"])
        lines.append(
            f"- queue overhead per job (client round trip minus the worker's generate_ms) p50 <= 15 ms: "
            f"{p50:.1f} ms, p95 {percentile(queue['overhead_ms'], 0.95):.1f} ms ({'met' if p50 <= 15 else 'NOT met'})"
        )
    if queue and queue.get("batch_sizes"):
        lines.append(f"- batches the worker ran through the queue (sizes, in order): {queue['batch_sizes']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["355m", "1.3b"], default="355m")
    parser.add_argument("--requests", type=int, default=8, help="concurrent requests (and the seed's batch)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=6, help="single requests per way (p50/p95 over them)")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnxruntime", "ctranslate2", "transformers"],
        help="the worker's INFERENCE_BACKEND (auto: onnxruntime when it loads)",
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--skip-queue", action="store_true", help="leave out Redis + worker + gateway")
    parser.add_argument("--child", choices=["seed", "worker"], help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    if args.child:
        result = child_seed(args) if args.child == "seed" else child_worker(args)
        print(json.dumps(result))
        return

    from bench.models import build_random_gpt2
    from services.inference_worker.conversion import ensure_converted

    started = time.perf_counter()
    print(f"building random GPT-2 {args.size} in {args.cache_dir} (cached) ...", flush=True)
    args.model = build_random_gpt2(args.size, args.cache_dir)
    if args.backend != "transformers":
        engine = "onnxruntime" if args.backend == "auto" else args.backend
        print(f"converting for {engine} (cached) ...", flush=True)
        ensure_converted(args.model, os.environ.get("INFERENCE_QUANTIZATION", "int8"), args.cache_dir, engine=engine)
    seed = run_child("seed", args)
    ours = run_child("worker", args)
    queue = None if args.skip_queue else measure_queue(args)
    print()
    print(table(args, seed, ours, queue))
    print(
        f"\n(took {time.perf_counter() - started:.0f} s; command: python -m bench.inference "
        f"--size {args.size} --requests {args.requests} --new-tokens {args.new_tokens} --rounds {args.rounds}"
        f"{'' if args.backend == 'auto' else ' --backend ' + args.backend})"
    )


if __name__ == "__main__":
    main()
