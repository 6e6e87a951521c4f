"""Each fast backend against the reference: same tokenizer, same greedy tokens in float32,
int8 close enough, and sampling parameters that mean the same."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from services.inference_worker.backends import BackendOptions, load_backend
from shared.schemas import GenerationParams
from tests.model_factory import TINY_CORPUS

GREEDY = GenerationParams(max_new_tokens=16, top_k=1, repetition_penalty=1.0)


@pytest.fixture(scope="module", params=["onnxruntime", "ctranslate2"])
def backends(request, trained_model_dir: Path):
    reference = load_backend("transformers", trained_model_dir, BackendOptions(threads=1))
    fp32 = load_backend(request.param, trained_model_dir, BackendOptions(threads=1, quantization="float32"))
    int8 = load_backend(request.param, trained_model_dir, BackendOptions(threads=1, quantization="int8"))
    assert fp32.name == int8.name == request.param
    return reference, fp32, int8


def prompt_set(backend, n: int = 60) -> list[list[int]]:
    """A fixed set of prompts in the model's format, cut at varied points."""
    rnd = random.Random(5)
    lines = sorted(set(TINY_CORPUS))
    prompts = []
    for _ in range(n):
        older, newer = rnd.choice(lines), rnd.choice(lines)
        ids = backend.codec.prompt([older], "1") + backend.codec.encode(newer)  # ends inside a reply
        prompts.append(ids[: rnd.randrange(6, len(ids) + 1)])
    return prompts


def next_tokens(backend, prompts: list[list[int]]) -> list[int]:
    """The greedy next token of each prompt (-1 where it is eos, which the backends strip)."""
    params = GenerationParams(max_new_tokens=1, top_k=1, repetition_penalty=1.0)
    return [(backend.continue_prompts([p], params)[0].token_ids or [-1])[0] for p in prompts]


def test_tokenizer_matches_transformers(backends):
    reference, fp32, _ = backends
    for text in ["привет анон", f"|0|1|двач не тот уже{reference.eos_token}|1|2|", "  ёлки\nпалки  "]:
        ids = reference.codec.encode(text)
        assert fp32.codec.encode(text) == ids
        assert reference.codec.eos_id not in ids, "eos written in text stays text"
        assert fp32.codec.decode(ids) == reference.codec.decode(ids)
    dialog = ["двач не тот уже", "привет анон"]
    assert fp32.codec.prompt(dialog) == reference.codec.prompt(dialog)
    assert (fp32.eos_token, fp32.codec.eos_id, fp32.codec.banned_ids) == (
        reference.eos_token,
        reference.codec.eos_id,
        reference.codec.banned_ids,
    )


def test_float32_greedy_tokens_equal_transformers(backends):
    reference, fp32, _ = backends
    prompts = prompt_set(reference, 12)
    expected = [c.token_ids for c in reference.continue_prompts(prompts, GREEDY)]
    assert [c.token_ids for c in fp32.continue_prompts(prompts, GREEDY)] == expected  # one batch
    assert [fp32.continue_prompts([p], GREEDY)[0].token_ids for p in prompts] == expected  # one by one


def test_int8_agrees_on_most_greedy_next_tokens(backends):
    reference, _, int8 = backends
    prompts = prompt_set(reference)
    expected, got = next_tokens(reference, prompts), next_tokens(int8, prompts)
    assert len(set(expected)) >= 10, "the prompt set must exercise many different next tokens"
    agreement = sum(a == b for a, b in zip(expected, got, strict=True)) / len(prompts)
    assert agreement >= 0.9, f"int8 agrees on {agreement:.0%} of next tokens"


def test_seeded_path_matches_transformers_with_repetition_penalty(backends):
    """With a seed the fast backends sample in numpy with transformers' semantics, the penalty
    over the prompt included: greedy tokens equal the reference's exactly."""
    reference, fp32, _ = backends
    params = GREEDY.model_copy(update={"repetition_penalty": 1.3, "seed": 3})
    prompts = prompt_set(reference, 6)
    expected = [c.token_ids for c in reference.continue_prompts(prompts, params)]
    assert [c.token_ids for c in fp32.continue_prompts(prompts, params)] == expected


def test_max_new_tokens_is_respected(backends):
    _, _, int8 = backends
    prompts = prompt_set(int8, 4)
    for max_new in (1, 5, 23):
        params = GenerationParams(max_new_tokens=max_new, temperature=1.0, top_k=0, top_p=1.0)
        for continuation in int8.continue_prompts(prompts, params):
            assert len(continuation.token_ids) <= max_new
    # A seeded job (the numpy path) too.
    params = GenerationParams(max_new_tokens=7, temperature=1.0, top_k=0, top_p=1.0, seed=1)
    assert all(len(c.token_ids) <= 7 for c in int8.continue_prompts(prompts, params))


def test_same_seed_same_output_other_seed_other_output(backends):
    _, _, int8 = backends
    prompt = prompt_set(int8, 1)
    params = GenerationParams(max_new_tokens=20, temperature=1.5, top_k=0, top_p=1.0, seed=11)
    first = int8.continue_prompts(prompt, params)[0].token_ids
    assert int8.continue_prompts(prompt, params)[0].token_ids == first
    others = {
        tuple(int8.continue_prompts(prompt, params.model_copy(update={"seed": s}))[0].token_ids) for s in range(12, 16)
    }
    assert others - {tuple(first)}, "different seeds never changed the sample"


def test_very_low_temperature_is_greedy(backends):
    reference, _, int8 = backends
    prompts = prompt_set(reference, 6)
    greedy = [c.token_ids for c in int8.continue_prompts(prompts, GREEDY)]
    # 0.05 is the lowest temperature the API accepts; on a random model's near-tied logits it
    # still samples a little, so compare the first tokens: nearly all must be the greedy ones.
    cold = GenerationParams(max_new_tokens=16, temperature=0.05, top_k=0, top_p=1.0, repetition_penalty=1.0)
    for seed in (1, 2, 3):
        sampled = int8.continue_prompts(prompts, cold.model_copy(update={"seed": seed}))
        same = sum(c.token_ids[:1] == g[:1] for c, g in zip(sampled, greedy, strict=True))
        assert same >= len(prompts) - 1, f"seed {seed}: only {same} of {len(prompts)} first tokens are greedy"


def test_variable_length_batch_equals_one_by_one(backends):
    """Prompts of different lengths batched together continue as they would alone."""
    _, fp32, _ = backends
    prompts = [p for p in prompt_set(fp32, 30)]
    prompts = [prompts[0][:6], prompts[1], prompts[2][:9], prompts[3]]
    alone = [fp32.continue_prompts([p], GREEDY)[0].token_ids for p in prompts]
    assert [c.token_ids for c in fp32.continue_prompts(prompts, GREEDY)] == alone


def test_a_seeded_reply_does_not_depend_on_its_batch(backends):
    """One generator per sequence: the same seed gives the same reply alone or beside others.
    (In float32: int8 quantizes a step's activations with one scale for the whole batch, so its
    logits move slightly with the batch; that is why the scheduler runs seeded jobs alone.)"""
    _, fp32, _ = backends
    prompts = prompt_set(fp32, 4)
    params = GenerationParams(max_new_tokens=12, temperature=1.3, top_k=0, top_p=0.9, repetition_penalty=1.2, seed=7)
    alone = [fp32.continue_prompts([p], params)[0].token_ids for p in prompts]
    assert [c.token_ids for c in fp32.continue_prompts(prompts, params)] == alone


def test_int8_prompts_of_mixed_lengths_continue_as_they_would_alone(backends):
    """A batch of prompts of mixed lengths gives each prompt the reply it gets alone, or a close
    one in int8 (a batch shares its activations' quantization scale); padding never leaks in."""
    _, _, int8 = backends
    pool = prompt_set(int8, 30)
    prompts = [pool[0][:6], pool[1], pool[2][:9], pool[3], pool[4][:7], pool[5][:6]]
    assert len({len(p) for p in prompts}) >= 3
    alone = [int8.continue_prompts([p], GREEDY)[0].token_ids for p in prompts]
    batched = [c.token_ids for c in int8.continue_prompts(prompts, GREEDY)]
    assert sum(map(len, alone)) >= 8  # (some prompts of this model end at once: eos)
    assert sum(b[:1] == a[:1] for a, b in zip(alone, batched, strict=True)) >= len(prompts) - 1
    same = sum(x == y for a, b in zip(alone, batched, strict=True) for x, y in zip(a, b, strict=False))
    assert same >= 0.6 * sum(min(len(a), len(b)) for a, b in zip(alone, batched, strict=True))


def test_prompts_of_close_lengths_are_prefilled_together():
    from services.inference_worker.onnxruntime_backend import prefill_groups

    # a group ends where a prompt is more than 1.25 times the group's shortest
    assert prefill_groups([5, 5, 6, 7, 9, 20, 21]) == [(0, 3), (3, 4), (4, 5), (5, 7)]
    assert prefill_groups([48] * 8) == [(0, 8)]
    assert prefill_groups([3]) == [(0, 1)]


def test_onnx_int8_cache_stays_close_to_float32_while_decoding(trained_model_dir: Path):
    """From the second token on, each step reads the cache: the int8 graph's default int8 cache
    (per-channel scales calibrated at conversion) keeps the greedy next token of >= 90% of steps
    equal to float32's, fed the same tokens, as the float16 cache does (INFERENCE_KV_CACHE)."""
    import numpy as np

    def load(**options):
        return load_backend("onnxruntime", trained_model_dir, BackendOptions(threads=1, **options))

    fp32, int8, half = load(quantization="float32"), load(quantization="int8"), load(kv_cache="float16")
    assert (fp32.cache_dtype, int8.cache_dtype, half.cache_dtype) == (np.float32, np.int8, np.float16)
    assert half.converted_dir.name == "onnx-int8-kvf16" and int8.converted_dir.name == "onnx-int8"
    slots = [backend.open_slots(1, 128) for backend in (fp32, int8, half)]
    agree = {"int8": 0, "float16": 0}
    steps = 0
    for prompt in prompt_set(fp32, 20):
        for pool in slots:
            pool.lengths[0] = 0
        logits = [pool.prefill(0, [prompt])[0] for pool in slots]
        for _ in range(10):  # fed float32's greedy token: every graph sees the same sequence
            token = int(np.argmax(logits[0]))
            logits = [pool.step(np.array([token]))[0] for pool in slots]
            steps += 1
            agree["int8"] += int(np.argmax(logits[1]) == np.argmax(logits[0]))
            agree["float16"] += int(np.argmax(logits[2]) == np.argmax(logits[0]))
    assert steps == 200
    for cache, same in agree.items():
        assert same / steps >= 0.9, f"the int8 graph with a {cache} cache agrees on {same / steps:.0%} of steps"


@pytest.mark.parametrize("accuracy_level", [4, 1])
def test_bench_weight_formats_4bit_graph_is_the_int8_graph_in_4_bits(trained_model_dir: Path, accuracy_level):
    """`bench.weight_formats` compares int8 weights with 4-bit ones: its 4-bit graph must be the
    worker's graph with every weight matrix as MatMulNBits, giving mostly the same greedy tokens."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from bench.weight_formats import four_bit_graph

    def load():
        return load_backend("onnxruntime", trained_model_dir, BackendOptions(threads=1, quantization="int8"))

    int8, four_bit = load(), load()
    graph_dir = four_bit_graph(int8.converted_dir, accuracy_level)
    nodes = onnx.load(str(graph_dir / "model.onnx"), load_external_data=False).graph.node
    ops = [node.op_type for node in nodes]
    assert ops.count("MatMulNBits") == 4 * int8.layers + 1 and "DynamicQuantizeMatMul" not in ops
    assert {a.i for n in nodes if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "accuracy_level"} == {
        accuracy_level
    }
    four_bit.session = ort.InferenceSession(str(graph_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    prompts = prompt_set(int8, 40)
    same = sum(int(np.argmax(int8.next_token_logits(p)) == np.argmax(four_bit.next_token_logits(p))) for p in prompts)
    assert same / len(prompts) >= 0.8, f"the 4-bit graph agrees with int8 on {same / len(prompts):.0%} of prompts"
