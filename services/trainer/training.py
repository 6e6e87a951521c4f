"""One fine-tuning run: examples -> eval before -> transformers' Trainer -> eval after -> report.

A run lives in its own folder (`RUN_DIR`):

    data.jsonl      the dialogs of the run (the data snapshot; `--resume` reads it back)
    checkpoints/    Trainer checkpoints when `--save-steps` is given (resume from the last)
    model/          the fine-tuned weights and tokenizer
    run.json        parameters, data description and hash, metrics, loss history
    report.md, report.json, loss.png

Works on CPU as on GPU: fp16/bf16, gradient accumulation and checkpoints pass through to Trainer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.trainer.data import DialogSource, write_jsonl
from services.trainer.examples import Example, ExampleBuilder, ExampleDataset, PadCollator, data_hash, split
from shared.model_store import VersionMeta
from shared.settings import TrainConfig

log = logging.getLogger(__name__)

DATA_FILE = "data.jsonl"
SOURCE_FILE = "data_source.json"  # how the snapshot was selected (kept for --resume)
RUN_FILE = "run.json"
MODEL_SUBDIR = "model"
CHECKPOINTS_SUBDIR = "checkpoints"

SAMPLE_MAX_NEW_TOKENS = 40  # length of the report's sample replies
# Fixed prompts (newest first) whose replies go into every report, so runs can be compared.
SAMPLE_DIALOGS: list[list[str]] = [
    ["привет анон, как дела?"],
    ["а ты чего не спишь", "сижу на двачах"],
    ["кот или собака?"],
    ["где пруфы?", "я вчера видел нло над домом"],
    ["посоветуйте что почитать"],
]


@dataclass
class RunResult:
    run_dir: Path
    model_dir: Path
    data: dict[str, Any]
    metrics: dict[str, Any]
    params: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def version_meta(self, name: str) -> VersionMeta:
        return VersionMeta(
            name=name, base_model=self.params["model"], data=self.data, params=self.params, metrics=self.metrics
        )

    def extra_files(self) -> list[Path]:
        """Files published beside the weights."""
        return [self.run_dir / n for n in (DATA_FILE, "report.md", "report.json", "loss.png")]

    @classmethod
    def load(cls, run_dir: Path) -> RunResult:
        """A finished run read back from its run.json (for `publish RUN_DIR`)."""
        run_dir = Path(run_dir)
        try:
            raw = json.loads((run_dir / RUN_FILE).read_text())
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{run_dir} has no {RUN_FILE}: not a finished training run") from exc
        return cls(
            run_dir=run_dir,
            model_dir=run_dir / MODEL_SUBDIR,
            data=raw["data"],
            metrics=raw["metrics"],
            params=raw["params"],
            samples=raw.get("samples", []),
            log_history=raw.get("log_history", []),
        )


def perplexity(loss: float | None) -> float | None:
    if loss is None or math.isnan(loss):
        return None
    return math.exp(loss) if loss < 50 else float("inf")


def _training_arguments(config: TrainConfig, run_dir: Path):
    import torch
    from transformers import TrainingArguments

    eval_every = (
        {"eval_strategy": "steps", "eval_steps": config.eval_steps} if config.eval_steps else {"eval_strategy": "epoch"}
    )
    if config.max_steps > 0 and not config.eval_steps:
        # A run bounded by steps may end before an epoch does: evaluate a few times along the way.
        eval_every = {"eval_strategy": "steps", "eval_steps": max(1, config.max_steps // 4)}
    save = (
        {"save_strategy": "steps", "save_steps": config.save_steps, "save_total_limit": config.save_total_limit}
        if config.save_steps
        else {"save_strategy": "no"}
    )
    return TrainingArguments(
        output_dir=str(run_dir / CHECKPOINTS_SUBDIR),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size or config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup if config.warmup < 1 else int(config.warmup),
        weight_decay=config.weight_decay,
        fp16=config.fp16,
        bf16=config.bf16,
        activation_checkpointing=config.gradient_checkpointing,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # also what lets --bf16 run on a CPU
        logging_steps=config.logging_steps,
        logging_first_step=True,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        **eval_every,
        **save,
    )


def _sample_replies(model, codec, config: TrainConfig) -> list[dict[str, Any]]:
    """Replies to SAMPLE_DIALOGS with the serving defaults and a fixed seed."""
    import torch

    from shared.schemas import GenerationParams
    from shared.transformers_generate import sample_reply

    params = GenerationParams(max_new_tokens=SAMPLE_MAX_NEW_TOKENS)
    model.eval()
    samples = []
    for i, dialog in enumerate(SAMPLE_DIALOGS):
        torch.manual_seed(config.seed + i)
        samples.append({"dialog": dialog, "reply": sample_reply(model, codec, dialog, params)})
    return samples


@dataclass
class _Prepared:
    """A run ready to train: the model, its tokenizer, the examples and how the data was made."""

    model: Any
    tokenizer: Any
    pad_id: int
    builder: ExampleBuilder
    train_examples: list[Example]
    eval_examples: list[Example]
    data: dict[str, Any]


def _snapshot(source: DialogSource, run_dir: Path, resume: bool) -> None:
    """The run's dialogs and how they were selected, kept in the run folder (`--resume` reads them)."""
    if not resume or not (run_dir / DATA_FILE).exists():
        write_jsonl(source.dialogs, run_dir / DATA_FILE)
        (run_dir / SOURCE_FILE).write_text(json.dumps(source.description, ensure_ascii=False))


def _prepare(config: TrainConfig, source: DialogSource) -> _Prepared:
    """Load the model and its tokenizer, build the examples and split off the held-out ones."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("loading model", extra={"model": config.model})
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    model = AutoModelForCausalLM.from_pretrained(config.model, dtype=torch.float32)
    # Never add tokens nor resize: examples hold no id past the model's rows (examples.py says why).
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id >= model.config.vocab_size:  # padding is masked out, but its id must still embed
        pad_id = tokenizer.eos_token_id
    builder = ExampleBuilder(
        tokenizer,
        vocab_size=model.config.vocab_size,
        max_length=config.max_length,
        max_turn_tokens=config.max_turn_tokens,
        reply_only=config.reply_only,
    )
    examples = builder.build_all(source.dialogs)
    train_examples, eval_examples = split(examples, config.eval_fraction, config.max_eval, config.seed)
    data = {
        **source.description,
        "snapshot": DATA_FILE,
        "dialogs": len(source.dialogs),
        "examples": len(examples),
        "train_examples": len(train_examples),
        "eval_examples": len(eval_examples),
        "train_label_tokens": sum(e.reply_tokens for e in train_examples),
        "sha256": data_hash(examples),
    }
    log.info("examples built", extra={k: v for k, v in data.items() if k != "path"})
    return _Prepared(model, tokenizer, pad_id, builder, train_examples, eval_examples, data)


def _evaluate(trainer: Any, when: str) -> float:
    loss = trainer.evaluate()["eval_loss"]
    log.info(f"eval {when} training", extra={"eval_loss": loss, "perplexity": perplexity(loss)})
    return loss


def _train(trainer: Any, run_dir: Path, resume: bool) -> Any:
    """Trainer.train, from the run's last checkpoint when resuming."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(str(run_dir / CHECKPOINTS_SUBDIR)) if resume else None
    if resume and checkpoint is None:
        log.warning(
            "--resume: no checkpoint in the run folder, starting from the beginning", extra={"run_dir": str(run_dir)}
        )
    return trainer.train(resume_from_checkpoint=checkpoint)


def _save_model(trainer: Any, run_dir: Path) -> Path:
    model_dir = run_dir / MODEL_SUBDIR
    trainer.save_model(str(model_dir))  # weights + tokenizer (processing_class)
    # Trainer pickles its arguments beside the weights: not needed to serve, and a version holds no pickles.
    (model_dir / "training_args.bin").unlink(missing_ok=True)
    return model_dir


def _write_run(result: RunResult) -> None:
    """run.json (what `publish RUN_DIR` reads back) and the report."""
    from services.trainer.report import write_report

    (result.run_dir / RUN_FILE).write_text(
        json.dumps(
            {
                "params": result.params,
                "data": result.data,
                "metrics": result.metrics,
                "samples": result.samples,
                "log_history": result.log_history,
            },
            ensure_ascii=False,
            indent=2,
        )
    )
    write_report(result)


def run_training(
    config: TrainConfig, source: DialogSource, run_dir: Path, *, threads: int = 0, resume: bool = False
) -> RunResult:
    """Fine-tune `config.model` on `source` in `run_dir` with `threads` torch threads on a CPU (0:
    every core this process may use); returns metrics before and after. With `resume`, training
    continues from the last checkpoint in `run_dir/checkpoints`."""
    import torch
    from transformers import Trainer

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    started = time.perf_counter()
    _snapshot(source, run_dir, resume)
    run = _prepare(config, source)
    trainer = Trainer(
        model=run.model,
        args=_training_arguments(config, run_dir),
        data_collator=PadCollator(run.pad_id),
        train_dataset=ExampleDataset(run.train_examples),
        eval_dataset=ExampleDataset(run.eval_examples),
        processing_class=run.tokenizer,
    )
    loss_before = _evaluate(trainer, "before")
    train_output = _train(trainer, run_dir, resume)
    loss_after = _evaluate(trainer, "after")
    model_dir = _save_model(trainer, run_dir)
    samples = _sample_replies(trainer.model, run.builder.codec, config) if config.samples else []
    metrics = {
        "eval_loss_before": loss_before,
        "perplexity_before": perplexity(loss_before),
        "eval_loss_after": loss_after,
        "perplexity_after": perplexity(loss_after),
        "train_loss": train_output.training_loss,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_runtime_s": round(train_output.metrics.get("train_runtime", 0.0), 2),
        "wall_time_s": round(time.perf_counter() - started, 2),
        "device": str(trainer.args.device),
    }
    result = RunResult(
        run_dir=run_dir,
        model_dir=model_dir,
        data=run.data,
        metrics=metrics,
        params={**config.public(), "threads": threads, "sample_max_new_tokens": SAMPLE_MAX_NEW_TOKENS},
        samples=samples,
        # train() starts a fresh state: put the evaluation before training back as step 0.
        log_history=[{"step": 0, "eval_loss": loss_before}, *trainer.state.log_history],
    )
    _write_run(result)
    log.info(
        "training run finished", extra={"run_dir": str(run_dir), **{k: v for k, v in metrics.items() if k != "device"}}
    )
    return result
