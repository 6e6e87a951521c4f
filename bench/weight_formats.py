"""Weights below int8: what 4-bit weights would save in memory and cost in speed, on this CPU.

    python -m bench.weight_formats [--size 355m] [--rounds 3]

The worker's memory is mostly its weights (docs/inference.md, "Memory"). This measures the int8
graph the worker runs against the same graph with every weight matrix in 4 bits (ONNX Runtime's
`MatMulNBits`, blocks of 32, symmetric), made from the int8 graph's own weights (dequantized, then
quantized again by ONNX Runtime's `quantize_matmul_4bits`), with its kernels computing in int8
(`accuracy_level` 4) or in float32 (1). Everything else (embeddings, int8 key/value cache,
attention) is the same graph. Each format loads in a process of its own (`--child`), so memory is
its own; the formats alternate for `--rounds` rounds. Reported per format: resident memory after
the session loads (anonymous, and file pages mapped from the graph), a 48-token prefill into one
row, and one decoding step with 1, 4 and 16 rows (as the continuous loop runs them), medians. The
random model of the real architecture (bench/models.py): speed and memory, not replies.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.inference import DEFAULT_CACHE

FORMATS = {"int8": None, "int4, int8 compute": 4, "int4, float32 compute": 1}
BLOCK = 32


def four_bit_graph(int8_dir: Path, accuracy_level: int) -> Path:
    """The int8 graph with each DynamicQuantizeMatMul as a 4-bit MatMulNBits (made once)."""
    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    out = int8_dir.with_name(f"{int8_dir.name}-bench-4bit-acc{accuracy_level}")
    if (out / "model.onnx").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(int8_dir / "model.onnx"))  # with its weights
    initializers = {t.name: t for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeMatMul":
            nodes.append(node)
            continue
        x, weight, scale, zero, *bias = node.input
        q = numpy_helper.to_array(initializers.pop(weight)).astype(np.float32)
        w = q * numpy_helper.to_array(initializers.pop(scale)).astype(np.float32)  # [K, N]
        del initializers[zero]
        rows, cols = w.shape
        blocks = -(-rows // BLOCK)
        w = np.ascontiguousarray(np.pad(w, ((0, blocks * BLOCK - rows), (0, 0))))
        packed = np.zeros((cols, blocks, BLOCK // 2), dtype=np.uint8)
        scales = np.zeros((cols, blocks), dtype=np.float32)
        zeros = np.zeros((cols, (blocks + 1) // 2), dtype=np.uint8)
        quantize_matmul_4bits(packed, w, scales, zeros, BLOCK, cols, rows, True)
        initializers[weight] = numpy_helper.from_array(packed, weight)
        initializers[f"{weight}.scales4"] = numpy_helper.from_array(scales, f"{weight}.scales4")
        inputs = [x, weight, f"{weight}.scales4"] + (["", "", bias[0]] if bias else [])
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                inputs,
                list(node.output),
                name=node.name,
                domain="com.microsoft",
                K=rows,
                N=cols,
                bits=4,
                block_size=BLOCK,
                accuracy_level=accuracy_level,
            )
        )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers.values())
    onnx.save(model, str(out / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    return out


def memory() -> dict[str, float]:
    """This process's resident memory, MiB: anonymous and file-backed."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def child(model: Path, graph_dir: Path) -> dict:
    """Load `graph_dir`'s graph (its memory), then time it in the worker's backend."""
    import onnxruntime as ort

    from services.inference_worker.backends import BackendOptions
    from services.inference_worker.onnxruntime_backend import OnnxRuntimeBackend

    options = BackendOptions(quantization="int8")
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads, session_options.inter_op_num_threads = options.cores, 1
    before = memory()
    session = ort.InferenceSession(str(graph_dir / "model.onnx"), session_options, providers=["CPUExecutionProvider"])
    loaded = memory()
    backend = OnnxRuntimeBackend(model, options)  # its tokenizer, cache layout and runs
    backend.session = session  # the format's session in place of the worker's own int8 one
    rng = np.random.default_rng(0)
    result = {key: loaded[key] - before[key] for key in ("RssAnon", "RssFile")}
    for rows in (1, 4, 16):
        slots = backend.open_slots(16, 1024)
        prefill = []
        for row in range(rows):
            started = time.perf_counter()
            slots.prefill(row, [rng.integers(0, 50000, 48).tolist()])
            prefill.append(time.perf_counter() - started)
        steps = []
        for _ in range(24):
            started = time.perf_counter()
            slots.step(rng.integers(0, 50000, rows))
            steps.append(time.perf_counter() - started)
        result[f"step_{rows}_ms"] = statistics.median(steps) * 1e3
        if rows == 16:
            result["prefill_ms"] = statistics.median(prefill) * 1e3
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["355m", "1.3b"], default="355m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.child)))
        return

    from bench.models import build_random_gpt2
    from services.inference_worker.conversion import ensure_converted

    model = build_random_gpt2(args.size, args.cache_dir)
    int8_dir = ensure_converted(model, "int8", engine="onnxruntime")
    graphs = {name: int8_dir if level is None else four_bit_graph(int8_dir, level) for name, level in FORMATS.items()}
    runs: dict[str, list[dict]] = {name: [] for name in graphs}
    for round_ in range(args.rounds):
        for name, graph_dir in graphs.items():
            command = [sys.executable, "-m", "bench.weight_formats", "--child", str(graph_dir), "--model", str(model)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(output.strip().splitlines()[-1]))
            print(f"  round {round_ + 1}, {name}: {runs[name][-1]}", flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    print(f"\n{args.size}, {args.rounds} rounds, medians; ratios against int8 measured in the same run\n")
    print(
        "| weights | session anon MiB | file MiB | prefill 48 ms | step 1 row ms | step 4 rows ms | step 16 rows ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in graphs:
        cells = [f"{median(name, 'RssAnon'):.0f}", f"{median(name, 'RssFile'):.0f}"]
        for key in ("prefill_ms", "step_1_ms", "step_4_ms", "step_16_ms"):
            value, base = median(name, key), median("int8", key)
            cells.append(f"{value:.1f}" + ("" if name == "int8" else f" ({value / base:.2f}x)"))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
