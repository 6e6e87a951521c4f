"""A run's report: report.json (machine-readable), report.md (for people) and loss.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.trainer.training import RunResult


def loss_curves(log_history: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train, eval) loss points as (step, loss) from Trainer's log history."""
    train = [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e]
    evaluation = [(int(e["step"]), float(e["eval_loss"])) for e in log_history if "eval_loss" in e and "step" in e]
    return train, evaluation


def plot_losses(log_history: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in jobs
    import matplotlib.pyplot as plt

    train, evaluation = loss_curves(log_history)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue")
    if evaluation:
        ax.plot(*zip(*evaluation, strict=True), label="eval loss", color="tab:orange", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (reply tokens)" if title.endswith("reply-only") else "loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def write_report(result: RunResult) -> None:
    run_dir = result.run_dir
    metrics, data, params = result.metrics, result.data, result.params
    report = {"metrics": metrics, "data": data, "params": params, "samples": result.samples}
    (run_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2))
    loss_kind = "reply-only" if params.get("reply_only") else "all tokens"
    plot_losses(result.log_history, run_dir / "loss.png", title=f"{params['model']} - {loss_kind}")

    source_options = ", ".join(
        f"{k}={_fmt(data[k])}" for k in ("path", "quantile", "toxicity_threshold", "limit") if k in data
    )
    lines = [
        f"# Training run `{run_dir.name}`",
        "",
        f"Base model: `{params['model']}`; loss on {loss_kind}; device `{metrics.get('device')}`.",
        "",
        "| | eval loss | perplexity |",
        "|---|---|---|",
        f"| before | {_fmt(metrics['eval_loss_before'])} | {_fmt(metrics['perplexity_before'])} |",
        f"| after | {_fmt(metrics['eval_loss_after'])} | {_fmt(metrics['perplexity_after'])} |",
        "",
        f"Train loss (mean over the run) {_fmt(metrics['train_loss'])}; {metrics['steps']} optimizer steps, "
        f"{_fmt(metrics['epochs'])} epochs, "
        f"{metrics['train_runtime_s']} s training, {metrics['wall_time_s']} s in all.",
        "",
        "## Data",
        "",
        f"Source: {data.get('source')} ({source_options}); "
        f"{data['dialogs']} dialogs -> {data['train_examples']} train / {data['eval_examples']} eval examples; "
        f"sha256 `{data['sha256']}`.",
        "",
        "## Parameters",
        "",
        "| parameter | value |",
        "|---|---|",
        *[f"| {k} | {_fmt(v)} |" for k, v in params.items()],
        "",
        "## Sample replies (fixed prompts, fixed seed)",
        "",
    ]
    for sample in result.samples:
        context = " / ".join(reversed(sample["dialog"]))  # oldest first reads naturally
        lines.append(f"- **{context}** -> {sample['reply'] or '(empty)'}")
    lines += ["", "![train and eval loss](loss.png)", ""]
    (run_dir / "report.md").write_text("\n".join(lines))
