"""Build the bundled demo model: a tiny GPT-2 trained from scratch on the demo corpus in a minute.

It speaks the project's prompt format (shared/prompt.py), so the worker serves it exactly like the
real model when the hub is unreachable. The build is deterministic for a seed and atomic: it is
made in a temporary folder beside the target and renamed into place at the end.

    python -m services.inference_worker.demo_model.build [--out DIR] [--steps N] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from services.inference_worker.demo_model.corpus import demo_dialogs
from shared.prompt import build_prompt
from shared.schemas import GenerationParams
from shared.tokenization import TextCodec

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
METADATA_FILE = "demo_model.json"
VERSION_FILE = "version.json"  # its name and its own sampling defaults, as a published version carries them

# Sized for about a minute on 2 cores: in that budget a narrow model trained for more (small)
# steps reached a lower loss than a wider one trained for fewer.
VOCAB_SIZE = 2500
N_LAYER = 4
N_EMBD = 128
N_HEAD = 4
# As long as GPT-2's, so that the worker's longest prompts (MAX_CONTEXT_TOKENS) never overflow;
# positions past ROW_TOKENS are untrained, so very long prompts work but read worse.
N_POSITIONS = 1024
ROW_TOKENS = 128  # examples are packed into rows of this many tokens
BATCH_ROWS = 4
DEFAULT_STEPS = 1100
PEAK_LR = 3e-3
WARMUP_STEPS = 40
THREADS = 2

# Sampling used to check the result (and printed by the CLI); the worker serves the demo model with it
# too (its version.json): the published model's defaults (a repetition penalty of 10) suit a 355M
# model trained on 2ch, not a 1.2M one trained for a minute.
SAMPLE_MESSAGES = ("привет анон", "двач, как дела?", "что думаешь о котах?", "ненавижу работу", "ты бот?")
SAMPLE_PARAMS = {"temperature": 1.0, "top_k": 10, "top_p": 0.95, "repetition_penalty": 1.2, "max_new_tokens": 30}


def train_tokenizer(dialogs: Sequence[Sequence[str]]):
    """A byte-level BPE tokenizer trained on `dialogs` rendered in the prompt format.

    Turn lengths are not known before the tokenizer exists, so the length buckets in this
    rendering come from a rough estimate; they only decide which marker strings BPE sees.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Tokenizer

    def estimate(text: str) -> int:
        return len(text) // 3

    texts = [build_prompt(d[1:], estimate, EOS, reply=d[0]) for d in dialogs]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=[EOS], show_progress=False)
    # transformers 5 builds a fast tokenizer from a `tokenizers` object, not from vocab/merges paths.
    return GPT2Tokenizer(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS)


def render_examples(dialogs: Sequence[Sequence[str]], tokenizer) -> list[list[int]]:
    """Token ids of each dialog as a training example: its older turns as the prompt, turns[0] as
    the reply, rendered as the worker renders prompts (shared/tokenization.py)."""
    codec = TextCodec.from_transformers(tokenizer, len(tokenizer))
    examples = [codec.example(d[1:], d[0])[0] for d in dialogs]
    too_long = [len(e) for e in examples if len(e) > ROW_TOKENS]
    if too_long:
        raise ValueError(f"{len(too_long)} demo examples exceed {ROW_TOKENS} tokens (longest {max(too_long)})")
    return examples


def _pack_rows(examples: list[list[int]], rng: random.Random, pad_id: int) -> list[tuple[list[int], list[int]]]:
    """One epoch as (input ids, labels) rows: whole examples in shuffled order, packed greedily.

    Each example starts after the previous one's eos, as a prompt starts a fresh context; the
    padding at the end of a row is ignored by the loss (label -100).
    """
    order = list(range(len(examples)))
    rng.shuffle(order)
    rows: list[tuple[list[int], list[int]]] = []
    current: list[int] = []
    for i in order:
        if len(current) + len(examples[i]) > ROW_TOKENS:
            rows.append(_padded(current, pad_id))
            current = []
        current = current + examples[i]
    if current:
        rows.append(_padded(current, pad_id))
    return rows


def _padded(ids: list[int], pad_id: int) -> tuple[list[int], list[int]]:
    pad = ROW_TOKENS - len(ids)
    return ids + [pad_id] * pad, ids + [-100] * pad


def _batches(examples: list[list[int]], rng: random.Random, pad_id: int):
    """Endless batches of BATCH_ROWS rows, epoch after epoch (each epoch packed anew)."""
    import torch

    pending: list[tuple[list[int], list[int]]] = []
    while True:
        while len(pending) < BATCH_ROWS:
            pending += _pack_rows(examples, rng, pad_id)
        batch, pending = pending[:BATCH_ROWS], pending[BATCH_ROWS:]
        yield torch.tensor([r[0] for r in batch]), torch.tensor([r[1] for r in batch])


def _learning_rate(step: int, total: int) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    warmup = min(WARMUP_STEPS, max(1, total // 10))
    if step < warmup:
        return PEAK_LR * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return PEAK_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _train(model, examples: list[list[int]], *, seed: int, steps: int, pad_id: int, progress: bool) -> list[float]:
    """Train `model` in place for `steps` steps; returns the loss of every step. With `progress`, a
    bar on a terminal, else a log line every ten seconds and one at the end (shared/progress.py)."""
    import torch

    from shared.progress import LoggedProgress

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR, betas=(0.9, 0.98), weight_decay=0.01, fused=True)
    batches = _batches(examples, rng, pad_id)
    losses: list[float] = []
    model.train()
    # The loss transformers picks anyway for a causal LM; named, so that it does not warn about it.
    model.loss_type = "ForCausalLM"
    bar = LoggedProgress(range(steps), desc="building the demo model", unit="step") if progress else None
    for step in bar if bar is not None else range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, steps)
        input_ids, labels = next(batches)
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if bar is not None and step % 10 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def build_demo_model(out_dir: Path, *, seed: int = 1234, steps: int | None = None, progress: bool = True) -> Path:
    """Train the demo model and save it (model, tokenizer, demo_model.json) into `out_dir`.

    Deterministic for a `seed` on the same machine and thread count. The model is built in a
    temporary folder beside `out_dir` and renamed into place, so a half-built model never appears.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    started = time.perf_counter()
    steps = DEFAULT_STEPS if steps is None else steps
    if steps < 1:
        raise ValueError("steps must be at least 1")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    dialogs = demo_dialogs()
    tokenizer = train_tokenizer(dialogs)
    examples = render_examples(dialogs, tokenizer)

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    # fork_rng: seeding must not change the random state of the process that asked for the build.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = GPT2Config(
            vocab_size=len(tokenizer),  # an int8 conversion needs the tokenizer and the matrix to agree
            n_positions=N_POSITIONS,
            n_embd=N_EMBD,
            n_layer=N_LAYER,
            n_head=N_HEAD,
            # No dropout: a minute of training on a small corpus underfits rather than overfits.
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
        try:
            losses = _train(model, examples, seed=seed, steps=steps, pad_id=tokenizer.eos_token_id, progress=progress)
        finally:
            torch.set_num_threads(threads)

    tail = losses[-min(20, len(losses)) :]
    metadata = {
        "seed": seed,
        "steps": steps,
        "initial_loss": round(losses[0], 4),
        "final_loss": round(sum(tail) / len(tail), 4),  # mean of the last steps: one batch is noisy
        "dialogs": len(dialogs),
        "examples_tokens": sum(len(e) for e in examples),
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "build_seconds": None,
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the model folder is shared with the workers
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        metadata["build_seconds"] = round(time.perf_counter() - started, 1)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, ensure_ascii=False, indent=2) + "\n")
        (tmp / VERSION_FILE).write_text(
            json.dumps({"name": "demo", "generation_defaults": SAMPLE_PARAMS}, indent=2) + "\n"
        )
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("demo model built", extra={"path": str(out_dir), **metadata})
    return out_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`, replacing an existing `target` with two renames."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{new.name}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_built(model_dir: Path) -> bool:
    """True if `model_dir` holds a finished demo model."""
    return all((model_dir / name).is_file() for name in ("config.json", METADATA_FILE, VERSION_FILE))


def ensure_demo_model(out_dir: Path | None = None, steps: int | None = None) -> Path:
    """The demo model folder, built first if it is not there (default: settings.demo_model_dir).

    A file lock beside the folder makes concurrent workers build it once: the others wait and reuse it.
    The build runs in a child process: training loads torch and its buffers, memory that a
    worker would otherwise keep while it serves the converted model.
    """
    from filelock import FileLock

    if out_dir is None:
        from shared.settings import WorkerSettings, get_settings

        out_dir = get_settings(WorkerSettings).demo_model_dir
        assert out_dir is not None  # the settings fill it in from DATA_DIR
    out_dir = Path(out_dir)
    if is_built(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir.parent / f".{out_dir.name}.lock")):
        if not is_built(out_dir):
            log.info("building the demo model", extra={"path": str(out_dir)})
            # Its log lines go to this process's output, as if the build ran here.
            command = [
                sys.executable,
                "-m",
                "services.inference_worker.demo_model.build",
                "--out",
                str(out_dir),
                "--no-samples",
            ]
            done = subprocess.run(command + (["--steps", str(steps)] if steps else []), check=False)
            if done.returncode != 0 or not is_built(out_dir):
                raise RuntimeError(
                    f"building the demo model in {out_dir} failed (exit {done.returncode}; its log is above)"
                )
    return out_dir


def sample_replies(model_dir: Path, messages: Sequence[str] = SAMPLE_MESSAGES, *, seed: int = 0) -> list[str]:
    """One sampled reply (SAMPLE_PARAMS) from the saved model to each message."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shared.transformers_generate import sample_reply

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    codec = TextCodec.from_transformers(tokenizer, model.config.vocab_size)
    params = GenerationParams(**SAMPLE_PARAMS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [sample_reply(model, codec, [message], params) for message in messages]


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: build the demo model and print a few sampled replies."""
    # Idle OpenMP threads spin for a long time by default; when other processes share the cores,
    # that spinning starves the thread being waited for (steps measured 2-5x slower). libgomp reads
    # this when torch is first imported, which is below.
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    # The build's own bar is the progress; transformers' bar for saving one small file is not needed.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from shared.logging_setup import configure_from_settings
    from shared.settings import WorkerSettings, get_settings

    settings = get_settings(WorkerSettings)
    parser = argparse.ArgumentParser(description="Build the bundled demo model.")
    parser.add_argument("--out", type=Path, default=settings.demo_model_dir, help="target folder")
    parser.add_argument("--steps", type=int, default=None, help=f"training steps (default {DEFAULT_STEPS})")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--no-samples", action="store_true", help="build only (no sampled replies)")
    args = parser.parse_args(argv)
    configure_from_settings(settings)
    out = build_demo_model(args.out, seed=args.seed, steps=args.steps)
    if args.no_samples:  # a worker building it: the log line above says where it is
        return
    print(f"demo model: {out}")
    for message, reply in zip(SAMPLE_MESSAGES, sample_replies(out), strict=True):
        print(f"> {message}\n< {reply}")


if __name__ == "__main__":
    main()
