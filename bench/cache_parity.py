"""How close the int8 graph's replies stay to float32's with each key/value cache, demo model.

    python -m bench.cache_parity [--count 200] [--tokens 32]

For each held-out dialog (bench/heldout_dialogs.py) the float32 graph samples a reply (the demo
model's own parameters, seeded) and every graph is fed the same tokens, one decoding step at a time
through the continuous loop's cache (`CacheSlots`), so that from the second token on each graph
reads its own cache. At every step it reports, against float32: whether the most likely next token
is the same (agreement), and the KL divergence of the next-token distribution. The int8 graphs
differ only in their cache: int8 (per-channel scales calibrated at conversion, the default) or
float16. ("Measured no worse for parity" is the int8 cache's bar: docs/inference.md.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.inference import DEFAULT_CACHE


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=32, help="decoding steps per dialog")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()

    from bench.heldout_dialogs import heldout
    from services.inference_worker.backends import BackendOptions
    from services.inference_worker.demo_model.build import ensure_demo_model
    from services.inference_worker.onnxruntime_backend import OnnxRuntimeBackend
    from services.inference_worker.sampling import sample_next
    from shared.schemas import GenerationParams

    model = ensure_demo_model(args.cache_dir / "demo-model")
    params = GenerationParams.model_validate(
        json.loads((model / "version.json").read_text()).get("generation_defaults", {})
    )
    ways = {
        "float32": BackendOptions(threads=2, quantization="float32"),
        "int8, int8 cache": BackendOptions(threads=2, quantization="int8", kv_cache="int8"),
        "int8, float16 cache": BackendOptions(threads=2, quantization="int8", kv_cache="float16"),
    }
    backends = {name: OnnxRuntimeBackend(model, options) for name, options in ways.items()}
    slots = {name: backend.open_slots(1, 1024) for name, backend in backends.items()}
    codec = backends["float32"].codec
    agree: dict[str, list[int]] = {name: [] for name in ways if name != "float32"}
    kl: dict[str, list[float]] = {name: [] for name in agree}
    banned = np.asarray(codec.banned_ids, dtype=np.int64)
    rng = np.random.default_rng(args.seed)
    for item in heldout(args.count, args.seed):
        prompt = codec.prompt(item.dialog, item.length)
        sequence = list(prompt)
        for pool in slots.values():
            pool.lengths[0] = 0  # the row starts again for each dialog
        logits = {name: pool.prefill(0, [prompt])[0] for name, pool in slots.items()}
        for _ in range(args.tokens):
            reference = logits["float32"]
            expected = softmax(reference.astype(np.float64))
            for name, same in agree.items():
                same.append(int(np.argmax(logits[name]) == np.argmax(reference)))
                got = softmax(logits[name].astype(np.float64))
                kl[name].append(float(np.sum(expected * (np.log(expected + 1e-30) - np.log(got + 1e-30)))))
            token = sample_next(reference, sequence, params, rng, banned)
            if token == codec.eos_id:
                break
            sequence.append(token)
            logits = {name: pool.step(np.array([token]))[0] for name, pool in slots.items()}
    result = {
        name: {"steps": len(agree[name]), "agreement": float(np.mean(agree[name])), "kl_mean": float(np.mean(kl[name]))}
        for name in agree
    }
    print(json.dumps(result, indent=2))
    print()
    print("| graph | steps | top-1 agreement with float32 | mean KL from float32 |")
    print("|---|---|---|---|")
    for name, row in result.items():
        print(f"| {name} | {row['steps']} | {row['agreement']:.3f} | {row['kl_mean']:.4f} |")


if __name__ == "__main__":
    main()
