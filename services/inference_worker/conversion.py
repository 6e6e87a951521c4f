"""Hugging Face checkpoint -> the fast backends' model files, converted once and cached beside it.

    python -m services.inference_worker.conversion MODEL_DIR [--engine onnxruntime] [--quantization int8]
        [--kv-cache int8|float16] [--out DIR]

converts at publish time; a worker converts on first use (`ensure_converted`). The converted model
lives in `<model_dir>/<engine>-<quantization>/` (`onnx-int8`, `ct2-int8`, ...; `onnx-int8-kvf16` for
ONNX Runtime's int8 graph with a float16 cache), or, when the model
folder is read-only (a hub snapshot), under the cache folder in a subfolder named after the
checkpoint's path. It holds the engine's model (ONNX Runtime: `model.onnx` and its weights, built
by onnx_graph.py; CTranslate2: `model.bin`, `config.json`, `vocabulary.json`), the fast tokenizer
(`tokenizer.json`) and `dvach-conversion.json` (what it was made from). A conversion is reused
while the checkpoint's files are unchanged (names, sizes, modification times); two processes
never convert at once (a file lock) and a half-written conversion is never seen (it is written
to a temporary folder, then renamed).

The conversion runs in a child process: loading the float32 checkpoint takes several times the
memory of the int8 model (docs/deploy.md, "Resources"), which a worker would otherwise keep after
it has moved on.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "float32")
# The key/value cache of onnxruntime's int8 graphs (float32 graphs keep float32; CTranslate2 its own).
KV_CACHES = ("int8", "float16")
# engine -> (folder prefix, the file whose presence means a finished conversion)
ENGINES = {"onnxruntime": ("onnx", "model.onnx"), "ctranslate2": ("ct2", "model.bin")}
META_FILE = "dvach-conversion.json"
# The converted format of each engine: a conversion of another format is made again. onnxruntime
# 2: int8 graphs keep the key/value cache in float16; 3: in int8 with calibrated scales, or float16
# in a folder of its own (onnx_graph.py).
FORMATS = {"onnxruntime": 3, "ctranslate2": 1}
# Files whose change means the checkpoint changed (weights, config, tokenizer).
_SOURCE_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.bin",
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


class ConversionError(RuntimeError):
    """The checkpoint cannot be converted; the message says what is wrong and what to do."""


def source_fingerprint(model_dir: Path) -> str:
    """A hash of the names, sizes and modification times of the checkpoint's files."""
    model_dir = Path(model_dir)
    entries = []
    for pattern in _SOURCE_PATTERNS:
        for path in sorted(model_dir.glob(pattern)):
            stat = path.stat()
            entries.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    if not entries:
        raise ConversionError(f"{model_dir} holds no checkpoint (no config.json or weights)")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:20]


def kv_cache_of(engine: str, quantization: str, kv_cache: str) -> str | None:
    """The cache a conversion is made for: only onnxruntime's int8 graphs have a choice."""
    return kv_cache if engine == "onnxruntime" and quantization == "int8" else None


def converted_dir(model_dir: Path, quantization: str, cache_dir: Path, engine: str, kv_cache: str = "int8") -> Path:
    """Where the conversion of `model_dir` lives: beside it if writable, else under `cache_dir`."""
    model_dir = Path(model_dir).resolve()
    name = f"{ENGINES[engine][0]}-{quantization}"
    if kv_cache_of(engine, quantization, kv_cache) == "float16":
        name += "-kvf16"
    if os.access(model_dir, os.W_OK):
        return model_dir / name
    tag = hashlib.sha256(str(model_dir).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{model_dir.name}-{tag}" / name


def read_meta(out_dir: Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def ensure_converted(
    model_dir: Path, quantization: str = "int8", cache_dir: Path | None = None, *, engine: str, kv_cache: str = "int8"
) -> Path:
    """The folder of `engine`'s conversion of `model_dir`, converting it first if needed.

    Raises ConversionError (with the converter's own explanation) when the checkpoint cannot be converted.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {sorted(ENGINES)}, not {engine!r}")
    if kv_cache not in KV_CACHES:
        raise ValueError(f"kv_cache must be one of {KV_CACHES}, not {kv_cache!r}")
    model_dir = Path(model_dir).resolve()
    out = converted_dir(model_dir, quantization, cache_dir or model_dir.parent, engine, kv_cache)
    fingerprint = source_fingerprint(model_dir)
    if _is_current(out, fingerprint, engine):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the conversion done
        if _is_current(out, fingerprint, engine):
            return out
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.perf_counter()
        log.info(
            "converting the model",
            extra={
                "model": str(model_dir),
                "engine": engine,
                "quantization": quantization,
                "kv_cache": kv_cache_of(engine, quantization, kv_cache),
                "out": str(out),
            },
        )
        try:
            _convert_in_child(model_dir, tmp, quantization, engine, kv_cache)
            meta = {
                "source": str(model_dir),
                "fingerprint": fingerprint,
                "engine": engine,
                "format": FORMATS[engine],
                "quantization": quantization,
                "kv_cache": kv_cache_of(engine, quantization, kv_cache),
                "converted_at": time.time(),
                "seconds": round(time.perf_counter() - started, 1),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
            if out.exists():  # a stale conversion of an older checkpoint: swap it out
                stale = out.parent / f".{out.name}.stale-{os.getpid()}"
                os.rename(out, stale)
                os.rename(tmp, out)
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.rename(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("model converted", extra={"out": str(out), "seconds": round(time.perf_counter() - started, 1)})
    return out


def _is_current(out: Path, fingerprint: str, engine: str) -> bool:
    meta = read_meta(out)
    return (
        meta is not None
        and meta.get("fingerprint") == fingerprint
        and meta.get("format", 1) == FORMATS[engine]
        and (out / ENGINES[engine][1]).exists()
    )


def _convert_in_child(model_dir: Path, out: Path, quantization: str, engine: str, kv_cache: str) -> None:
    # The child writes to this process's stderr (its progress shows where ours does) and leaves
    # the reason of a refusal in a file.
    error_file = out.parent / f"{out.name}.error"
    args = [
        sys.executable,
        "-m",
        "services.inference_worker.conversion",
        str(model_dir),
        "--out",
        str(out),
        "--quantization",
        quantization,
        "--engine",
        engine,
        "--kv-cache",
        kv_cache,
        "--error-file",
        str(error_file),
    ]
    try:
        done = subprocess.run(args, env={**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}, check=False)
        if done.returncode != 0:
            reason = error_file.read_text().strip() if error_file.exists() else ""
            raise ConversionError(
                reason or f"conversion of {model_dir} failed (exit {done.returncode}; its log is above)"
            )
    finally:
        error_file.unlink(missing_ok=True)


def check_vocabulary(model_dir: Path):
    """The checkpoint's tokenizer and its `TextCodec`, after checking that no id the pipeline feeds
    the model can be past its rows (shared/tokenization.py). A tokenizer larger than the model,
    as the published checkpoint's is (`<|endoftext|>` added one past the 50257 rows), is served:
    the added token is special, so it is never fed nor sampled."""
    from transformers import AutoConfig, AutoTokenizer

    from shared.tokenization import TextCodec, VocabularyError

    config = AutoConfig.from_pretrained(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as exc:  # missing or broken tokenizer files
        raise ConversionError(
            f"{model_dir} has no usable tokenizer ({type(exc).__name__}: {exc}); "
            "the converter needs the tokenizer saved in the model folder"
        ) from exc
    try:
        codec = TextCodec.from_transformers(tokenizer, config.vocab_size)
    except VocabularyError as exc:
        raise ConversionError(f"{model_dir}: {exc}") from exc
    return tokenizer, codec


def convert(model_dir: Path, out: Path, quantization: str, engine: str, kv_cache: str = "int8") -> Path:
    """Convert in this process (the child of `ensure_converted`, or the publish-time CLI)."""
    tokenizer, codec = check_vocabulary(model_dir)
    if engine == "onnxruntime":
        from services.inference_worker.onnx_graph import UnsupportedModel, write_model

        try:
            write_model(model_dir, out, quantization, codec, kv_cache)
        except UnsupportedModel as exc:
            raise ConversionError(str(exc)) from exc
    else:
        _convert_ctranslate2(model_dir, out, quantization)
    # The worker tokenizes with the `tokenizers` library alone (no transformers/torch in its memory).
    tokenizer.backend_tokenizer.save(str(Path(out) / "tokenizer.json"))
    (Path(out) / "dvach-tokenizer.json").write_text(
        json.dumps(
            {
                "eos_token": codec.eos_token,
                "eos_token_id": codec.eos_id,
                "size": len(tokenizer),
                "vocab_size": codec.vocab_size,
            }
        )
    )
    return Path(out)


def _convert_ctranslate2(model_dir: Path, out: Path, quantization: str) -> None:
    """CTranslate2's converter, told to leave out tokens past the model's rows (its GPT-2 loader
    refuses a vocabulary larger than the embedding; those tokens are never fed nor sampled)."""
    import ctranslate2.converters
    from ctranslate2.converters import transformers as ct2_transformers

    class GPT2WithinRows(ct2_transformers.GPT2Loader):
        def get_vocabulary(self, model, tokenizer):
            return super().get_vocabulary(model, tokenizer)[: model.config.vocab_size]

        def set_config(self, config, model, tokenizer):
            super().set_config(config, model, tokenizer)
            rows = model.config.vocab_size
            if tokenizer.convert_tokens_to_ids(config.bos_token) >= rows:  # e.g. the added <|endoftext|>
                config.bos_token = tokenizer.eos_token

    ct2_transformers._MODEL_LOADERS["GPT2Config"] = GPT2WithinRows()
    ctranslate2.converters.TransformersConverter(str(model_dir), low_cpu_mem_usage=True).convert(
        str(out), quantization=quantization, force=True
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert a GPT-2 checkpoint for a fast backend.")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--engine", choices=sorted(ENGINES), default="onnxruntime")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="int8")
    parser.add_argument("--kv-cache", choices=KV_CACHES, default="int8", help="onnxruntime int8 graphs' cache")
    parser.add_argument("--out", type=Path, help="write here (default: the cached place, via the lock)")
    parser.add_argument("--error-file", type=Path, help="write the reason of a refusal here too")
    args = parser.parse_args(argv)
    from shared.logging_setup import configure_from_settings
    from shared.settings import WorkerSettings, get_settings

    configure_from_settings(get_settings(WorkerSettings))
    try:
        if args.out:
            convert(args.model_dir, args.out, args.quantization, args.engine, args.kv_cache)
            if not args.error_file:  # run by a user, not by ensure_converted
                print(args.out)
        else:
            print(ensure_converted(args.model_dir, args.quantization, engine=args.engine, kv_cache=args.kv_cache))
    except ConversionError as exc:
        print(f"ConversionError: {exc}", file=sys.stderr)
        if args.error_file:
            args.error_file.write_text(str(exc))
        sys.exit(2)


if __name__ == "__main__":
    main()
