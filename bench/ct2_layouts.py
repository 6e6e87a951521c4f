"""CTranslate2 alone, no Python scheduler around it: lanes x threads layouts on one machine.

    python -m bench.ct2_layouts [--size 355m|1.3b] [--repeats 3]

Loads the random-weight model `bench.inference` builds (var/bench; run `make bench` once first)
and times, for each layout (replicas x threads per replica), one 32-token reply and 8 replies at
once: one batch of 8 on one lane, or the 8 split evenly over the lanes. The numbers behind the
worker's defaults in docs/inference.md; compare layouts within one run (the machine is noisy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.inference import DEFAULT_CACHE, PARAMS

LAYOUTS = [(1, 2), (2, 1), (2, 2)]


def main(argv: list[str] | None = None) -> None:
    import ctranslate2

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["355m", "1.3b"], default="355m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    model = Path(DEFAULT_CACHE) / f"random-gpt2-{args.size}" / "ct2-int8"
    if not model.exists():
        raise SystemExit(f"{model} is missing: run `python -m bench.inference --size {args.size}` once first")
    vocabulary = json.loads((model / "vocabulary.json").read_text())
    prompt = [vocabulary[i] for i in range(100, 148)]  # 48 tokens
    options = dict(
        max_length=args.new_tokens,
        min_length=args.new_tokens,
        include_prompt_in_result=False,
        sampling_topk=PARAMS["top_k"],
        sampling_topp=PARAMS["top_p"],
        sampling_temperature=PARAMS["temperature"],
        repetition_penalty=PARAMS["repetition_penalty"],
    )
    print("| lanes x threads | 1 request | 8 at once, one batch on one lane | 8 at once, split over the lanes |")
    print("|---|---|---|---|")
    for lanes, threads in LAYOUTS:
        generator = ctranslate2.Generator(
            str(model), device="cpu", compute_type="int8", inter_threads=lanes, intra_threads=threads
        )
        generator.generate_batch([prompt], **options)  # warm-up
        single, one_lane, split = [], [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            generator.generate_batch([prompt], **options)
            single.append(time.perf_counter() - started)
            started = time.perf_counter()
            generator.generate_batch([prompt] * 8, **options)
            one_lane.append(8 * args.new_tokens / (time.perf_counter() - started))
            started = time.perf_counter()
            pending = [
                generator.generate_batch([prompt] * (8 // lanes), asynchronous=True, **options) for _ in range(lanes)
            ]
            for results in pending:
                for result in results:
                    result.result()
            split.append(8 * args.new_tokens / (time.perf_counter() - started))
        print(
            f"| {lanes} x {threads} | {statistics.median(single):.2f} s | {statistics.median(one_lane):.0f} tokens/s "
            f"| {statistics.median(split):.0f} tokens/s |",
            flush=True,
        )
        del generator


if __name__ == "__main__":
    main()
