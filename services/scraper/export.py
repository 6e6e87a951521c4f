"""The training set: scored dialogs at or above a toxicity quantile (the seed kept the top quarter).

Writes into one folder:
- `dialogues.jsonl`: one `{"id": thread number, "dialogue": [newest, ..., oldest]}` per line, the
  seed's shape;
- `hf/`: the same rows as a `datasets` dataset (`load_from_disk`), with the dialog's database id,
  board, post numbers and score as extra columns;
- `summary.json`: counts, the threshold, the score distribution and the dialog lengths.
Files are written next to their final name and renamed, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine

from services.scraper import store

log = logging.getLogger(__name__)


class NothingToExport(RuntimeError):
    """No dialog has a score yet."""


def _features():
    from datasets import Features, Sequence, Value

    return Features(
        {
            "id": Value("int64"),
            "dialogue": Sequence(Value("string")),
            "dialog_id": Value("int64"),
            "board": Value("string"),
            "post_nums": Sequence(Value("int64")),
            "toxicity": Value("float64"),
        }
    )


def export_dataset(engine: Engine, out_dir: Path, quantile: float = 0.75) -> dict:
    """Export dialogs scored at or above the `quantile` of all scores; returns the summary."""
    if not 0 <= quantile <= 1:
        raise ValueError("the quantile is between 0 and 1")
    threshold = store.toxicity_quantile(engine, quantile)
    if threshold is None:
        raise NothingToExport("no dialog has a toxicity score yet: run `score` first")
    from datasets import Dataset

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / "dialogues.jsonl"
    partial = out_dir / "dialogues.jsonl.partial"
    rows: list[dict] = []
    lengths: Counter[int] = Counter()
    with partial.open("w", encoding="utf-8") as out:
        for row in store.export_rows(engine, threshold):
            out.write(json.dumps({"id": row["thread_num"], "dialogue": row["turns"]}, ensure_ascii=False) + "\n")
            rows.append(
                {
                    "id": row["thread_num"],
                    "dialogue": row["turns"],
                    "dialog_id": row["id"],
                    "board": row["board"],
                    "post_nums": row["post_nums"],
                    "toxicity": row["toxicity"],
                }
            )
            lengths[len(row["turns"])] += 1
    partial.replace(jsonl)

    hf_dir, hf_partial = out_dir / "hf", out_dir / "hf.partial"
    shutil.rmtree(hf_partial, ignore_errors=True)
    Dataset.from_list(rows, features=_features()).save_to_disk(str(hf_partial))
    shutil.rmtree(hf_dir, ignore_errors=True)
    hf_partial.rename(hf_dir)

    scores = store.score_summary(engine)
    summary = {
        "quantile": quantile,
        "threshold": round(threshold, 6),
        "dialogs_total": store.count_dialogs(engine),
        "dialogs_scored": scores["scored"],
        "dialogs_exported": len(rows),
        "exported_lengths": {str(k): v for k, v in sorted(lengths.items())},
        "exported_mean_length": round(sum(k * v for k, v in lengths.items()) / len(rows), 3) if rows else None,
        "scores": scores,
        "files": {"jsonl": str(jsonl), "dataset": str(hf_dir)},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    log.info("dataset exported", extra={k: summary[k] for k in ("threshold", "dialogs_scored", "dialogs_exported")})
    return summary
