"""`train --feedback N`: the bot's replies people liked, from chats with /learn on, become extra
examples of a real (tiny, two-step) training run."""

from __future__ import annotations

import json

import psycopg
import pytest

from services.trainer.data import read_feedback
from tests.trainer.dialogs import write_dialogs_jsonl

LEARNING, NOT_LEARNING = -1001, -1002


@pytest.fixture(scope="module")
def replies(trainer_database_url):
    """Replies with their reactions' totals, as the bot records them."""
    rows = [
        # chat, message, likes, dislikes, text, dialog
        (LEARNING, 1, 3, 0, "двач не тот уже", ["бамп годному треду"]),  # liked: net 3
        (LEARNING, 2, 3, 1, "где пруфы билли", ["скинь картинку с котом", "кот лучше собаки очевидно"]),  # net 2
        (LEARNING, 3, 2, 1, "сажа тебе в тред", ["двач не тот уже"]),  # net 1: below 2
        (LEARNING, 4, 5, 0, None, None),  # liked, but sent before /learn on: no text kept
        (NOT_LEARNING, 1, 9, 0, "ты что несёшь вообще", ["кот лучше собаки очевидно"]),  # learning off since
    ]
    with psycopg.connect(trainer_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO chat_settings (chat_id, learn) VALUES (%s, true), (%s, false)", [LEARNING, NOT_LEARNING]
        )
        for chat_id, message_id, likes, dislikes, text, dialog in rows:
            conn.execute(
                "INSERT INTO bot_replies (chat_id, message_id, job_id, model_version, likes, dislikes, text, dialog) "
                "VALUES (%s, %s, 'job', 'tiny', %s, %s, %s, %s)",
                [chat_id, message_id, likes, dislikes, text, json.dumps(dialog) if dialog else None],
            )


def test_feedback_takes_the_liked_replies_of_learning_chats(trainer_database_url, replies):
    liked = read_feedback(trainer_database_url, 2)
    assert [(d.id, d.turns) for d in liked] == [
        (f"reply:{LEARNING}:1", ["двач не тот уже", "бамп годному треду"]),
        (f"reply:{LEARNING}:2", ["где пруфы билли", "скинь картинку с котом", "кот лучше собаки очевидно"]),
    ]
    assert len(read_feedback(trainer_database_url, 1)) == 3
    assert read_feedback(trainer_database_url, 4) == []


def test_train_with_feedback_adds_the_liked_replies_as_examples(trainer_cli, replies, tiny_model_dir, tmp_path):
    data = write_dialogs_jsonl(tmp_path / "dialogs.jsonl", 16)
    run_dir = tmp_path / "run"
    result = trainer_cli(
        "train", "--jsonl", str(data), "--model", str(tiny_model_dir), "--run-dir", str(run_dir),
        "--max-steps", "2", "--batch-size", "4", "--eval-fraction", "0.1", "--no-samples", "--feedback", "2",
    )  # fmt: skip
    assert "feedback: 2 liked replies added (threshold 2)" in result.stdout
    run = json.loads((run_dir / "run.json").read_text())
    assert run["data"]["dialogs"] == 18 and run["data"]["feedback"] == {"threshold": 2, "replies": 2}
    snapshot = [json.loads(line) for line in (run_dir / "data.jsonl").read_text().splitlines()]
    assert [row["dialogue"] for row in snapshot if str(row["id"]).startswith("reply:")] == [
        ["двач не тот уже", "бамп годному треду"],
        ["где пруфы билли", "скинь картинку с котом", "кот лучше собаки очевидно"],
    ]
    refused = trainer_cli("train", "--jsonl", str(data), "--feedback", "0", check=False)
    assert refused.returncode != 0 and "feedback" in refused.stderr.lower()
