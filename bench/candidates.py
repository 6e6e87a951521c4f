"""The cost of several candidates per reply: N candidates + the reranker against one candidate.

    python -m bench.candidates [--size 355m] [--candidates 4] [--rounds 10] [--requests 8]
                               [--new-tokens 32] [--prompt-tokens 48] [--classifier-threads 1]
                               [--classifier tiny|base] [--classifier-engine onnxruntime|torch]
                               [--kv-cache int8|float16]

In one process, the worker's own path: the onnxruntime backend (int8; its cache int8 by default,
`--kv-cache float16` as before) and the continuous
DecodingLoop as `make_scheduler` builds them from the settings (INFERENCE_SLOTS etc. from the
environment), the random-weight model of the real architecture (bench/models.py, cached in
var/bench), and the reranker with a random classifier (int8 on ONNX Runtime, as the worker loads
it by default: `runtime.load_scorer`) of the default's shape, rubert-tiny (`--classifier base`:
BERT-base, the scraper's). The random model's replies are bytes that the classifier's tokenizer
reads as a few words, so the classifier is given texts of a real reply's size instead
(`REPLY_WORDS` words each: 32 tokens of Russian).
Two ways, alternated round by round so that the machine's other work falls on both alike:
- one: `candidates=1`, no classifier run (what a job cost before the reranker);
- many: `candidates=N`, then the reranker scores the N candidates (the classifier included) and
  chooses, as the Celery task does after the loop's reply.
At one request (one after the other) and at `--requests` at once (each in its own thread, as the
worker's task threads run them: loop, then the reranker). Random weights rarely say eos, so every
candidate runs the full `--new-tokens`: the job waits for its longest candidate, as here.
Reported: reply time p50 for each way and the ratio many/one (the goal: at most 1.4x at one
request), and the machine's load average before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.inference import DEFAULT_CACHE, PARAMS, bench_dialog  # noqa: E402
from services.inference_worker.conversion import KV_CACHES  # noqa: E402

REPLY_WORDS = 24  # a 32-token Russian reply, in the classifier's word tokens (about 25-35 for a real one)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="355m")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=48)
    parser.add_argument("--classifier-threads", type=int, default=1)
    parser.add_argument("--classifier", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--classifier-engine", choices=("onnxruntime", "torch"), default="onnxruntime")
    parser.add_argument("--kv-cache", choices=KV_CACHES, default="int8")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    return parser.parse_args()


def report(result: dict, args: argparse.Namespace) -> None:
    p50, p50_burst = result["single_p50_s"], result["at_once_p50_s"]
    load_before, load_after = result["loadavg_before"], result["loadavg_after"]
    print(json.dumps(result, indent=2))
    print()
    print(f"| way | 1 request, p50 | {args.requests} at once, reply p50 |")
    print("|---|---|---|")
    print(f"| 1 candidate | {p50['one']:.3f} s | {p50_burst['one']:.3f} s |")
    print(f"| {args.candidates} candidates, no reranker | {p50['decode']:.3f} s | {p50_burst['decode']:.3f} s |")
    print(f"| {args.candidates} candidates + reranker | {p50['many']:.3f} s | {p50_burst['many']:.3f} s |")
    print(f"| ratio, decoding only | {result['single_decode_ratio']:.2f}x | {result['at_once_decode_ratio']:.2f}x |")
    print(
        f"| ratio, with the reranker | {result['single_ratio']:.2f}x (goal <= 1.4x) | {result['at_once_ratio']:.2f}x |"
    )
    print(f"the reranker alone (classifier included), at one request: {result['rerank_p50_s_at_one_request']:.3f} s")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")


def main() -> None:
    args = parse_args()
    from bench.models import build_random_classifier, build_random_gpt2
    from services.inference_worker.backends import load_backend
    from services.inference_worker.generation import Generator
    from services.inference_worker.reranker import Reranker
    from services.inference_worker.runtime import backend_options, load_scorer, make_scheduler
    from shared.schemas import GenerationParams
    from shared.settings import WorkerSettings

    model = build_random_gpt2(args.size, args.cache_dir)
    classifier = build_random_classifier(args.cache_dir, args.classifier)
    settings = WorkerSettings(
        redis_url="redis://unused",
        inference_backend="onnxruntime",
        reranker_toxicity_model=str(classifier),
        reranker_threads=args.classifier_threads,
        reranker_toxicity_engine=args.classifier_engine,
        inference_kv_cache=args.kv_cache,
        inference_cache_dir=args.cache_dir / "converted",
    )
    backend = load_backend("onnxruntime", model, backend_options(settings))
    generator = Generator(backend)
    loop = make_scheduler(generator, backend, settings)
    scorer = load_scorer(settings)  # as the worker loads it
    reply_like = [" ".join(f"аб{letter}" for letter in "вгдежзийклмнопрстуфхцчшщыьэюя"[:REPLY_WORDS])]
    reranker = Reranker(generator.codec.count_tokens, lambda texts: scorer.score(reply_like * len(texts)))
    dialog = bench_dialog(backend.encode, backend.eos_token, args.prompt_tokens)
    base = GenerationParams(max_new_tokens=args.new_tokens, **PARAMS)
    recent = ["скинь кота", "двач не торт"]

    rerank_s: list[float] = []

    def one_reply(n: int, rerank: bool) -> float:
        started = time.perf_counter()
        reply = loop.reply(dialog, base.model_copy(update={"candidates": n}))
        if rerank:
            began = time.perf_counter()
            reranker.choose(reply.candidates, dialog, recent, base.length, "normal")
            rerank_s.append(time.perf_counter() - began)
        return time.perf_counter() - started

    def burst(n: int, rerank: bool) -> list[float]:
        with ThreadPoolExecutor(args.requests) as pool:
            return list(pool.map(lambda _: one_reply(n, rerank), range(args.requests)))

    # one: a job of one candidate, as before; decode: N candidates without the reranker (the
    # loop's share of the cost); many: N candidates and the reranker (what a job costs now).
    ways = {"one": (1, False), "decode": (args.candidates, False), "many": (args.candidates, True)}
    for n, rerank in ways.values():  # warm-up: buffers, bindings of each batch size, the classifier
        one_reply(n, rerank)
        burst(n, rerank)
    rerank_s.clear()
    load_before = os.getloadavg()
    single: dict[str, list[float]] = {w: [] for w in ways}
    at_once: dict[str, list[float]] = {w: [] for w in ways}
    for _ in range(args.rounds):
        for way, (n, rerank) in ways.items():
            single[way].append(one_reply(n, rerank))
    rerank_alone = statistics.median(rerank_s)
    for _ in range(max(1, args.rounds // 2)):
        for way, (n, rerank) in ways.items():
            at_once[way] += burst(n, rerank)
    load_after = os.getloadavg()
    loop.stop()

    p50 = {w: statistics.median(v) for w, v in single.items()}
    p50_burst = {w: statistics.median(v) for w, v in at_once.items()}
    result = {
        "size": args.size,
        "candidates": args.candidates,
        "classifier": args.classifier,
        "classifier_engine": args.classifier_engine,
        "kv_cache": args.kv_cache,
        "slots": getattr(loop, "slots", None),
        "single_p50_s": p50,
        "single_ratio": p50["many"] / p50["one"],
        "single_decode_ratio": p50["decode"] / p50["one"],
        "rerank_p50_s_at_one_request": rerank_alone,
        "at_once": args.requests,
        "at_once_p50_s": p50_burst,
        "at_once_ratio": p50_burst["many"] / p50_burst["one"],
        "at_once_decode_ratio": p50_burst["decode"] / p50_burst["one"],
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    report(result, args)


if __name__ == "__main__":
    main()
