"""Training data from the database: the toxicity quantile and the size limit pick the right dialogs."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session

from services.trainer.data import read_database, read_jsonl
from shared.db import make_engine
from shared.db.models import Dialog


@pytest.fixture(scope="module")
def scored_dialogs(trainer_database_url):
    """20 dialogs scored 0.00, 0.05, ... 0.95 (id order = score order), two unscored, one too short."""
    engine = make_engine(trainer_database_url)
    rows = []
    for i in range(20):
        rows.append((f"ответ {i}", f"вопрос {i}", round(i * 0.05, 2)))
    rows += [("ответ без оценки a", "вопрос a", None), ("ответ без оценки b", "вопрос b", None)]
    with Session(engine) as session:
        session.execute(delete(Dialog))
        for reply, context, toxicity in rows:
            turns = [reply, context]
            session.add(
                Dialog(
                    turns_hash=hashlib.sha256(json.dumps(turns).encode()).hexdigest(),
                    turns=turns,
                    post_nums=[2, 1],
                    board="b",
                    thread_num=1,
                    length=2,
                    toxicity=toxicity,
                )
            )
        session.add(
            Dialog(turns_hash="short", turns=["один"], post_nums=[1], board="b", thread_num=1, length=1, toxicity=0.99)
        )
        session.commit()
    yield
    engine.dispose()


def test_quantile_keeps_the_most_toxic_quarter(trainer_database_url, scored_dialogs):
    source = read_database(trainer_database_url, quantile=0.75)
    # percentile_cont(0.75) of the 21 scores 0.00 .. 0.95 and 0.99 is 0.75; the 1-turn dialog is no example.
    assert [d.turns[0] for d in source.dialogs] == [f"ответ {i}" for i in (19, 18, 17, 16, 15)]
    assert source.description["source"] == "database"
    assert source.description["toxicity_threshold"] == pytest.approx(0.75)
    assert source.description["skipped"] == 1


def test_limit_keeps_the_most_toxic(trainer_database_url, scored_dialogs):
    source = read_database(trainer_database_url, quantile=0.5, limit=3)
    assert [d.toxicity for d in source.dialogs] == [0.95, 0.9, 0.85]


def test_quantile_zero_takes_every_dialog_scored_or_not(trainer_database_url, scored_dialogs):
    source = read_database(trainer_database_url, quantile=0)
    assert len(source.dialogs) == 22
    assert {d.turns[0] for d in source.dialogs} >= {"ответ без оценки a", "ответ без оценки b"}


def test_export_command_writes_the_selection_as_jsonl(trainer_cli, scored_dialogs, tmp_path):
    out = tmp_path / "export.jsonl"
    result = trainer_cli("export", str(out), "--quantile", "0.75", "--limit", "4")
    assert "exported 4 dialogs" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["dialogue"] for row in rows] == [[f"ответ {i}", f"вопрос {i}"] for i in (19, 18, 17, 16)]
    assert [d.turns for d in read_jsonl(out).dialogs] == [row["dialogue"] for row in rows]


def test_jsonl_skips_unusable_lines(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": 1, "dialogue": ["ответ", "вопрос"]}, ensure_ascii=False),
                "{not json",
                json.dumps({"id": 2, "dialogue": ["одна реплика"]}, ensure_ascii=False),
                json.dumps({"id": 3, "dialogue": ["ответ", "  "]}, ensure_ascii=False),
                json.dumps(
                    {"id": 4, "dialogue": [" ответ ", "вопрос", "ещё раньше"], "toxicity": 0.9}, ensure_ascii=False
                ),
            ]
        )
    )
    source = read_jsonl(path)
    assert [(d.id, d.turns) for d in source.dialogs] == [
        (1, ["ответ", "вопрос"]),
        (4, ["ответ", "вопрос", "ещё раньше"]),
    ]
    assert source.description["skipped"] == 3


def test_train_from_the_database_uses_the_selected_rows(trainer_cli, scored_dialogs, tiny_model_dir, tmp_path):
    run_dir = tmp_path / "db-run"
    trainer_cli(
        "train", "--from-db", "--quantile", "0.75", "--model", str(tiny_model_dir), "--run-dir", str(run_dir),
        "--max-steps", "2", "--batch-size", "2", "--eval-fraction", "0.2", "--no-samples",
    )  # fmt: skip
    snapshot = [json.loads(line) for line in (run_dir / "data.jsonl").read_text().splitlines()]
    assert [row["dialogue"][0] for row in snapshot] == [f"ответ {i}" for i in (19, 18, 17, 16, 15)]
    data = json.loads((run_dir / "run.json").read_text())["data"]
    assert data["source"] == "database" and data["quantile"] == 0.75
    assert data["dialogs"] == 5 and data["train_examples"] + data["eval_examples"] == 5
