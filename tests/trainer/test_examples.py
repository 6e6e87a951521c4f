"""Training examples: the prompt format, which tokens carry a loss label, padding, the split."""

from __future__ import annotations

import pytest

from services.trainer.data import DialogRecord
from services.trainer.examples import IGNORE_INDEX, ExampleBuilder, PadCollator, data_hash, split


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def labelled_text(tokenizer, example) -> str:
    return tokenizer.decode(
        [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE_INDEX]
    )


def test_labels_mask_everything_but_the_reply(tokenizer):
    eos = tokenizer.eos_token
    dialog = ["кот лучше собаки очевидно", "скинь картинку с котом", "привет анон как дела"]  # newest first
    example = ExampleBuilder(tokenizer, reply_only=True).build(dialog)

    # Oldest first, alternating speakers, the reply is speaker 1 and ends with eos.
    assert example.text == (
        f"|1|1|привет анон как дела{eos}|0|1|скинь картинку с котом{eos}|1|1|кот лучше собаки очевидно{eos}"
    )
    assert example.input_ids == tokenizer.encode(example.text, add_special_tokens=False)

    # Exactly the reply and its eos carry labels, as a contiguous tail; the rest is -100.
    assert labelled_text(tokenizer, example) == "кот лучше собаки очевидно" + eos
    first = next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in example.labels[:first])
    assert example.labels[first:] == example.input_ids[first:]
    assert example.labels[-1] == tokenizer.eos_token_id
    # The speaker/length marker before the reply is given at inference time: no label.
    assert tokenizer.decode(example.input_ids[first - 5 : first]) == "|1|1|"


def test_all_tokens_option_labels_the_whole_example(tokenizer):
    example = ExampleBuilder(tokenizer, reply_only=False).build(["сажа тебе в тред", "двач не тот уже"])
    assert example.labels == example.input_ids


def test_padding_never_counts(tokenizer):
    builder = ExampleBuilder(tokenizer)
    short = builder.build(["бамп", "двач"])
    long = builder.build(["пошёл работать завтра рано вставать", "нормально а у тебя что нового", "привет анон"])
    batch = PadCollator(tokenizer.eos_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in (short, long)])
    n = len(short.input_ids)
    assert batch["input_ids"].shape == (2, len(long.input_ids))
    assert batch["attention_mask"][0, :n].tolist() == [1] * n
    assert batch["attention_mask"][0, n:].tolist() == [0] * (len(long.input_ids) - n)
    assert batch["labels"][0, n:].tolist() == [IGNORE_INDEX] * (len(long.input_ids) - n)
    assert batch["labels"][0, :n].tolist() == short.labels
    assert batch["labels"][1].tolist() == long.labels


def test_long_dialogs_lose_their_oldest_turns_first(tokenizer):
    dialog = ["кот лучше собаки очевидно", "где пруфы билли", "скинь картинку с котом", "привет анон как дела"]
    full = ExampleBuilder(tokenizer).build(dialog)
    cut = ExampleBuilder(tokenizer, max_length=len(full.input_ids) - 1).build(dialog)
    assert len(cut.input_ids) < len(full.input_ids)
    assert "привет анон как дела" not in cut.text  # the oldest turn went
    assert cut.text.endswith("|1|1|кот лучше собаки очевидно" + tokenizer.eos_token)
    assert labelled_text(tokenizer, cut) == labelled_text(tokenizer, full)


def test_split_and_hash_are_deterministic(tokenizer):
    builder = ExampleBuilder(tokenizer)
    dialogs = [DialogRecord(i, [f"ответ {i}", f"вопрос {i}"]) for i in range(40)]
    examples = builder.build_all(dialogs)
    train_a, eval_a = split(examples, 0.1, 1000, seed=1)
    train_b, eval_b = split(examples, 0.1, 1000, seed=1)
    _, eval_c = split(examples, 0.1, 1000, seed=2)
    assert [e.text for e in eval_a] == [e.text for e in eval_b] and len(eval_a) == 4
    assert [e.text for e in train_a] == [e.text for e in train_b]
    assert [e.text for e in eval_a] != [e.text for e in eval_c]
    assert len(train_a) + len(eval_a) == 40 and not {e.text for e in train_a} & {e.text for e in eval_a}
    assert data_hash(examples) == data_hash(builder.build_all(dialogs))
    assert data_hash(examples) != data_hash(examples[::-1])


def test_special_strings_and_markers_in_dialogs_stay_text(tokenizer):
    """An example gets exactly one eos per turn, whatever the turns contain."""
    eos_id = tokenizer.eos_token_id
    dialog = ["ответ <|endoftext|> с </s>", "вопрос |1|2| <|endoftext|>", "начало"]
    example = ExampleBuilder(tokenizer).build(dialog)
    assert example.input_ids.count(eos_id) == 3
    assert labelled_text(tokenizer, example) == "ответ с" + tokenizer.eos_token
