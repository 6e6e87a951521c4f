"""The training set: scored dialogs at or above a toxicity quantile (the seed kept the top quarter).

Writes into one folder:
- `dialogues.jsonl`: the dialogs in the project's one dialog format (shared/dialog_jsonl.py:
  `{"id": dialog id, "dialogue": [newest, ..., oldest], "toxicity": ..., ...}` per line);
- `hf/`: the same rows as a `datasets` dataset (`load_from_disk`), one column per key;
- `summary.json`: counts, the threshold, the score distribution and the dialog lengths.
Files are written next to their final name and renamed, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from services.scraper.store import summary_of
from shared.db.dataset import dataset_stats, dialog_lines, selected_dialogs, toxicity_threshold
from shared.dialog_jsonl import DialogLine, write_jsonl

log = logging.getLogger(__name__)

JSONL_FILE = "dialogues.jsonl"


class NothingToExport(RuntimeError):
    """No dialog has a score yet."""


def _features() -> Any:
    from datasets import Features, Sequence, Value

    return Features(
        {
            "id": Value("int64"),
            "dialogue": Sequence(Value("string")),
            "toxicity": Value("float64"),
            "board": Value("string"),
            "thread_num": Value("int64"),
            "post_nums": Sequence(Value("int64")),
        }
    )


def _write_dataset(lines: list[DialogLine], out_dir: Path) -> Path:
    """The `datasets` copy, written beside its place and renamed into it."""
    from datasets import Dataset

    hf_dir, hf_partial = out_dir / "hf", out_dir / "hf.partial"
    shutil.rmtree(hf_partial, ignore_errors=True)
    Dataset.from_list([line.model_dump() for line in lines], features=_features()).save_to_disk(str(hf_partial))
    shutil.rmtree(hf_dir, ignore_errors=True)
    hf_partial.rename(hf_dir)
    return hf_dir


def export_dataset(engine: Engine, out_dir: Path, quantile: float = 0.75) -> dict[str, Any]:
    """Export dialogs scored at or above the `quantile` of all scores; returns the summary."""
    if not 0 <= quantile <= 1:
        raise ValueError("the quantile is between 0 and 1")
    with engine.connect() as conn:
        threshold = toxicity_threshold(conn, quantile)
        if threshold is None:
            raise NothingToExport("no dialog has a toxicity score yet: run `score` first")
        lines = list(dialog_lines(conn, selected_dialogs(threshold)))
        stats = dataset_stats(conn)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / JSONL_FILE
    write_jsonl(lines, jsonl)
    hf_dir = _write_dataset(lines, out_dir)

    lengths = Counter(len(line.dialogue) for line in lines)
    summary = {
        "quantile": quantile,
        "threshold": round(threshold, 6),
        "dialogs_total": stats.dialogs,
        "dialogs_scored": stats.scored,
        "dialogs_exported": len(lines),
        "exported_lengths": {str(k): v for k, v in sorted(lengths.items())},
        "exported_mean_length": round(sum(k * v for k, v in lengths.items()) / len(lines), 3) if lines else None,
        "scores": summary_of(stats),
        "files": {"jsonl": str(jsonl), "dataset": str(hf_dir)},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    log.info("dataset exported", extra={k: summary[k] for k in ("threshold", "dialogs_scored", "dialogs_exported")})
    return summary
