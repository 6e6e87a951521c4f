"""The prompt format (docs/architecture.md, "Prompt format"), checked against hand-written
examples of the seed's format."""

from itertools import pairwise

import pytest

from shared.prompt import build_prompt, cut_reply, length_bucket, speakers

EOS = "<|endoftext|>"


def words(text: str) -> int:
    """A stand-in tokenizer: one token per word, so the buckets in the examples are easy to read."""
    return len(text.split())


@pytest.mark.parametrize(
    ("n_tokens", "bucket"),
    [(0, "1"), (1, "1"), (15, "1"), (16, "2"), (50, "2"), (51, "3"), (256, "3"), (257, "-"), (10_000, "-")],
)
def test_length_bucket_edges(n_tokens, bucket):
    assert length_bucket(n_tokens) == bucket


def test_single_turn_prompt_matches_seed_format():
    assert build_prompt(["привет анон"], words, EOS, reply_length="2") == "|0|1|привет анон<|endoftext|>|1|2|"


def test_dialog_is_rendered_oldest_first_with_alternating_speakers():
    dialog = ["третий", "второй", "первый"]  # newest first, as the bot and the scraper store it
    expected = "|0|1|первый<|endoftext|>|1|1|второй<|endoftext|>|0|1|третий<|endoftext|>|1|3|"
    assert build_prompt(dialog, words, EOS, reply_length="3") == expected


def test_reply_is_always_speaker_one():
    for n in range(1, 7):
        assert speakers(n)[-1] == 0  # the newest turn answers to... the reply, which is speaker 1
        assert all(a != b for a, b in pairwise(speakers(n)))


def test_long_turn_gets_long_bucket():
    long_turn = " ".join(["слово"] * 60)
    assert build_prompt([long_turn], words, EOS).startswith("|0|3|слово")


def test_training_example_appends_reply_with_its_bucket_and_eos():
    example = build_prompt(["как дела"], words, EOS, reply="нормально")
    assert example == "|0|1|как дела<|endoftext|>|1|1|нормально<|endoftext|>"


def test_empty_dialog_is_refused():
    with pytest.raises(ValueError):
        build_prompt([], words, EOS)


@pytest.mark.parametrize(
    ("generated", "reply"),
    [
        ("  ну и зачем  <|endoftext|>|0|1|мусор", "ну и зачем"),
        ("ответ|0|2|следующий ход", "ответ"),
        ("ответ |1|-|ещё", "ответ"),
        ("без конца", "без конца"),
        ("<|endoftext|>хвост", ""),
        ("|0|1|сразу маркер", ""),
        ("цена |5|, а не маркер", "цена |5|, а не маркер"),
        ("оборвалось на полу\ufffd", "оборвалось на полу"),
    ],
)
def test_cut_reply_stops_at_eos_or_next_speaker(generated, reply):
    assert cut_reply(generated, EOS) == reply
