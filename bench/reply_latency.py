"""Time from request to reply through a running gateway (`make run` first).

    python -m bench.reply_latency [--url http://127.0.0.1:8000] [-n 20]

Sends n requests one after another and prints the median, p95, and the worker's own share
(generate_ms) so the queue's part shows too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

PROMPTS = ["привет анон", "что делаешь", "скинь кота", "двач уже не торт", "пойдём пить чай"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    totals, generation, tokens = [], [], []
    with httpx.Client(base_url=args.url, timeout=120) as http:
        http.post("/v1/replies", json={"dialog": ["разогрев"]}).raise_for_status()
        for i in range(args.n):
            started = time.perf_counter()
            response = http.post("/v1/replies", json={"dialog": [PROMPTS[i % len(PROMPTS)]]})
            totals.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            body = response.json()
            generation.append(body["generate_ms"])
            tokens.append(body["new_tokens"])
            version = body["model_version"]
    print(f"model {version}, {args.n} sequential requests")
    print(f"request -> reply  median {statistics.median(totals):.0f} ms  p95 {percentile(totals, 0.95):.0f} ms")
    print(f"worker generation median {statistics.median(generation):.0f} ms;", end=" ")
    print(f"new tokens median {statistics.median(tokens):.0f}")
    outside = statistics.median(t - g for t, g in zip(totals, generation, strict=True))
    print(f"outside generation (HTTP + queue + result) median {outside:.0f} ms")


if __name__ == "__main__":
    main()
