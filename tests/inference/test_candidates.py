"""Several candidates per job: one prefill of the prompt whose key/value rows are copied to the
other candidates' slots (the continuous DecodingLoop on onnxruntime), CTranslate2's own
`num_hypotheses`, transformers' `num_return_sequences`."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.inference_worker.backends import BackendOptions, load_backend
from services.inference_worker.decoding_loop import DecodingLoop
from services.inference_worker.generation import Generator
from shared.schemas import GenerationParams

GREEDY = GenerationParams(max_new_tokens=20, top_k=1, repetition_penalty=1.0)
SAMPLED = GenerationParams(max_new_tokens=20, temperature=1.5, top_k=0, repetition_penalty=1.0)
DIALOGS = [["двач не тот уже"], ["скинь картинку с котом", "привет"]]


@pytest.fixture(scope="module")
def fp32_generator(trained_model_dir: Path) -> Generator:
    return Generator(load_backend("onnxruntime", trained_model_dir, BackendOptions(threads=1, quantization="float32")))


def test_candidates_share_one_prefill_and_continue_from_the_copied_cache(fp32_generator: Generator):
    """Greedy candidates from copied cache rows must equal the greedy reply of a lone prefill:
    a wrong copy (missing tokens, wrong positions) changes the tokens."""
    dialog = ["двач не тот уже", "привет анон"]
    expected = fp32_generator.reply(dialog, GREEDY)
    loop = DecodingLoop(fp32_generator, slots=8, slot_tokens=128)
    try:
        reply = loop.submit(dialog, GREEDY.model_copy(update={"candidates": 4})).result(120)
        assert loop.prefilled_rows == 1  # one prompt prefilled for four candidates
        assert max(loop.batch_sizes) == 4  # the four decode as rows of one batch
        sampled = loop.submit(dialog, SAMPLED.model_copy(update={"candidates": 4})).result(120)
        assert loop.prefilled_rows == 2
    finally:
        loop.stop()
    assert reply.candidates == [expected.text] * 4
    assert len(sampled.candidates) == 4 and len(set(sampled.candidates)) > 1  # independent draws


def test_a_job_waits_for_as_many_free_slots_as_candidates(fp32_generator: Generator):
    loop = DecodingLoop(fp32_generator, slots=4, slot_tokens=128)
    try:
        with loop._cond:  # both queued before the loop admits either
            first = loop.submit(["двач не тот уже"], GREEDY.model_copy(update={"candidates": 3}))
            second = loop.submit(["скинь картинку с котом"], GREEDY.model_copy(update={"candidates": 2}))
        assert len(first.result(120).candidates) == 3 and len(second.result(120).candidates) == 2
        too_many = loop.submit(["где пруфы билли"], GREEDY.model_copy(update={"candidates": 8})).result(120)
    finally:
        loop.stop()
    assert second.job.started > first.job.started  # 3 + 2 > 4 slots: the second waited
    assert len(too_many.candidates) == 4  # at most the slots


def test_seeded_candidates_reproduce_and_the_first_is_the_seeded_reply(fp32_generator: Generator):
    seeded = SAMPLED.model_copy(update={"seed": 11})
    loop = DecodingLoop(fp32_generator, slots=4, slot_tokens=128)
    try:
        one = loop.submit(["двач не тот уже"], seeded).result(120)
        four = loop.submit(["двач не тот уже"], seeded.model_copy(update={"candidates": 4})).result(120)
        again = loop.submit(["двач не тот уже"], seeded.model_copy(update={"candidates": 4})).result(120)
    finally:
        loop.stop()
    assert four.candidates == again.candidates
    assert four.candidates[0] == one.text
    assert len(set(four.candidates)) > 1


@pytest.mark.parametrize("engine", ["ctranslate2", "transformers", "onnxruntime"])
def test_every_backend_samples_n_candidates_through_the_generator(trained_model_dir: Path, engine: str):
    """The batch path (ctranslate2's num_hypotheses, transformers' num_return_sequences, onnxruntime's
    batch of repeated prompts): n candidates per dialog, greedy ones all the same, sampled ones not."""
    options = BackendOptions(threads=1, quantization="float32")
    generator = Generator(load_backend(engine, trained_model_dir, options))
    greedy = generator.reply_many(DIALOGS, GREEDY.model_copy(update={"candidates": 3}))
    for dialog, reply in zip(DIALOGS, greedy, strict=True):
        assert reply.candidates == [generator.reply(dialog, GREEDY).text] * 3
    sampled = generator.reply(["привет"], SAMPLED.model_copy(update={"candidates": 4}))
    assert len(sampled.candidates) == 4 and len(set(sampled.candidates)) > 1
    seeded = SAMPLED.model_copy(update={"candidates": 3, "seed": 5})
    assert generator.reply(["привет"], seeded).candidates == generator.reply(["привет"], seeded).candidates
