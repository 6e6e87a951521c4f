"""Scoring with a tiny classifier made here, and the export of the training set."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from services.scraper.export import NothingToExport, export_dataset
from services.scraper.toxicity import score_dialogs
from shared.dialog_jsonl import read_jsonl
from shared.toxicity import ToxicClass, ToxicityScorer, toxic_class
from tests.scraper.conftest import PO_THREADS, crawl, make_config
from tests.scraper.tiny_classifier import make_tiny_classifier


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory, recorded_dir):
    corpus = json.loads((recorded_dir / PO_THREADS[1]).read_bytes())["threads"][0]["posts"]
    return make_tiny_classifier(tmp_path_factory.mktemp("tiny-toxic"), [p["comment"] for p in corpus])


@pytest.mark.parametrize(
    "id2label, problem_type, label, expected",
    [
        ({0: "LABEL_0", 1: "LABEL_1"}, None, None, ToxicClass(1, False, False)),
        ({0: "toxic", 1: "neutral"}, None, None, ToxicClass(0, False, False)),
        (
            {0: "non-toxic", 1: "insult", 2: "obscenity", 3: "threat", 4: "dangerous"},
            "multi_label_classification",
            None,
            ToxicClass(0, True, True, unsafe=4),
        ),
        # rubert-tiny-toxicity's config as first published, without problem_type: still multi-label
        (
            {0: "non-toxic", 1: "insult", 2: "obscenity", 3: "threat", 4: "dangerous"},
            None,
            None,
            ToxicClass(0, True, True, unsafe=4),
        ),
        ({0: "normal", 1: "offensive", 2: "hate speech"}, None, None, ToxicClass(1, False, False)),  # softmax
        ({0: "non-toxic", 1: "insult"}, "multi_label_classification", "insult", ToxicClass(1, False, True)),
        ({0: "a", 1: "b", 2: "c"}, None, "2", ToxicClass(2, False, False)),
        ({0: "score"}, "regression", None, ToxicClass(0, False, True)),
    ],
)
def test_which_class_is_toxic(id2label, problem_type, label, expected):
    assert toxic_class(id2label, problem_type, label) == expected


def test_a_clean_and_a_dangerous_class_score_as_rubert_tiny_toxicity_card_says(tmp_path):
    """1 - p(non-toxic) * (1 - p(dangerous)), from the model's own sigmoid outputs."""
    import torch

    from tests.scraper.tiny_classifier import make_tiny_classifier

    labels = ("non-toxic", "insult", "obscenity", "threat", "dangerous")  # no problem_type in its config
    folder = make_tiny_classifier(tmp_path / "multi", ["ну ты и дурак", "привет анон", "иди работай"], labels=labels)
    scorer = ToxicityScorer(str(folder))
    texts = ["ну ты и дурак", "привет анон"]
    batch = scorer.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        probs = torch.sigmoid(scorer.model(**batch).logits)
    expected = (1 - probs[:, 0] * (1 - probs[:, 4])).tolist()
    assert scorer.score(texts) == pytest.approx(expected, abs=1e-6)
    assert scorer.score(texts) != pytest.approx((1 - probs[:, 0]).tolist(), abs=1e-6)  # p(dangerous) counts


def test_unknown_classes_need_a_setting():
    with pytest.raises(ValueError, match="TOXICITY_LABEL"):
        toxic_class({0: "a", 1: "b", 2: "c"}, None, None)
    with pytest.raises(ValueError, match="not a class"):
        toxic_class({0: "a", 1: "b"}, None, "toxic")


async def test_scoring_is_resumable_and_scores_the_reply_turn(engine, dvach, recorded_dir, tiny_classifier):
    import torch

    dvach.serve_thread("po", recorded_dir / PO_THREADS[1])
    report = await crawl(engine, make_config(dvach, boards=("po",)))
    total = report.counts.dialogs_added
    assert total > 100
    scorer = ToxicityScorer(str(tiny_classifier))
    assert scorer.toxic == ToxicClass(1, False, False)  # id2label: neutral, toxic

    before = REGISTRY.get_sample_value("dvach_scraper_dialogs_scored_total") or 0.0
    assert score_dialogs(engine, scorer, batch_size=16, limit=40, progress=False) == 40
    with engine.connect() as conn:
        first = dict(conn.execute(text("SELECT id, toxicity FROM dialogs WHERE toxicity IS NOT NULL")).all())
    assert len(first) == 40

    # Interrupted here; the next run scores the rest and leaves the first scores alone.
    assert score_dialogs(engine, scorer, batch_size=16, progress=False) == total - 40
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, turns, toxicity, scored_by FROM dialogs ORDER BY id")).all()
    assert all(row.toxicity is not None and 0 <= row.toxicity <= 1 for row in rows)
    assert {row.scored_by for row in rows} == {str(tiny_classifier)}
    assert all(first[row.id] == row.toxicity for row in rows if row.id in first)
    assert (REGISTRY.get_sample_value("dvach_scraper_dialogs_scored_total") or 0.0) - before == total
    assert len({round(row.toxicity, 6) for row in rows}) > 10  # not a constant

    # The score is the toxic-class probability of the reply turn (turns[0]), computed here by hand.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    for row in random.Random(0).sample(rows, 5):
        with torch.inference_mode():
            logits = model(
                **tokenizer(row.turns[0], return_tensors="pt", truncation=True, max_length=scorer.max_tokens)
            ).logits
        assert torch.softmax(logits, -1)[0, 1].item() == pytest.approx(row.toxicity, abs=1e-4)
        other = tokenizer(row.turns[1], return_tensors="pt")
        with torch.inference_mode():
            assert torch.softmax(model(**other).logits, -1)[0, 1].item() != pytest.approx(row.toxicity, abs=1e-7)


def insert_scored(engine, scores: list[float | None]) -> None:
    with engine.begin() as conn:
        for i, score in enumerate(scores):
            conn.execute(
                text(
                    "INSERT INTO dialogs (turns_hash, turns, post_nums, board, thread_num, length, toxicity, "
                    "scored_by) VALUES (:h, CAST(:turns AS jsonb), CAST(:nums AS jsonb), 'b', :t, 2, :s, 'm')"
                ),
                {
                    "h": f"{i:064d}",
                    "turns": json.dumps([f"ответ {i}", f"пост {i}"], ensure_ascii=False),
                    "nums": json.dumps([2 * i + 2, 2 * i + 1]),
                    "t": 1000 + i,
                    "s": score,
                },
            )


def test_export_keeps_the_dialogs_at_or_above_the_quantile(engine, tmp_path):
    from datasets import load_from_disk

    with pytest.raises(NothingToExport):
        export_dataset(engine, tmp_path / "empty", 0.75)
    rng = random.Random(7)
    scores = [rng.random() for _ in range(57)] + [None] * 6
    insert_scored(engine, scores)
    scored = np.array([s for s in scores if s is not None])

    for quantile in (0.75, 0.0, 0.5, 1.0):
        out = tmp_path / f"q{quantile}"
        summary = export_dataset(engine, out, quantile)
        threshold = np.quantile(scored, quantile)  # linear interpolation, like percentile_cont
        want = sorted(1000 + i for i, s in enumerate(scores) if s is not None and s >= threshold - 1e-12)
        lines = [json.loads(line) for line in (out / "dialogues.jsonl").read_text(encoding="utf-8").splitlines()]
        assert sorted(line["thread_num"] for line in lines) == want
        # The one dialog format (shared/dialog_jsonl.py): the dialog's own id, its turns, score and source.
        assert all(set(line) == {"id", "dialogue", "toxicity", "board", "thread_num", "post_nums"} for line in lines)
        assert len({line["id"] for line in lines}) == len(lines)
        first = lines[0]["thread_num"] - 1000
        assert lines[0]["dialogue"] == [f"ответ {first}", f"пост {first}"]
        assert lines[0]["toxicity"] == pytest.approx(scores[first])
        turns = [line["dialogue"] for line in lines]
        assert [line.dialogue for _, line in read_jsonl(out / "dialogues.jsonl")] == turns
        dataset = load_from_disk(str(out / "hf"))
        assert dataset["id"] == [line["id"] for line in lines] and dataset["dialogue"] == turns
        assert min(dataset["toxicity"]) >= threshold - 1e-12
        assert summary["threshold"] == pytest.approx(threshold, abs=1e-6)
        assert (summary["dialogs_total"], summary["dialogs_scored"], summary["dialogs_exported"]) == (63, 57, len(want))
        assert sum(summary["scores"]["histogram"].values()) == 57
        assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert len(want) == 1  # quantile 1: the top score only
