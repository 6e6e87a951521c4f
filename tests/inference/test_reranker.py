"""The reranker (services/inference_worker/reranker.py): its rules on texts, its choice by tone,
and a real worker choosing among candidates of a model biased toward the failures (an echo, a
loop, a repeat of the chat's recent reply), with a tiny toxicity classifier built here."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from services.inference_worker.reranker import (
    QUALITY_MARGIN,
    SHARP_CEILING,
    Reranker,
    distinct2,
    garbage,
    overlap,
    pick,
)
from shared import ops_state
from shared.embedded import free_port
from shared.generation_client import GenerationClient
from shared.schemas import CandidateScores, GenerationParams, GenerationResult
from shared.settings import QueueSettings, WorkerSettings
from tests.model_factory import BIAS_TURNS, FIXED_REPLY, GOOD_REPLY, LOOP_REPLY, TINY_CORPUS, make_biased_gpt2
from tests.scraper.tiny_classifier import make_tiny_classifier

# The biased model is sampled as it learned: no penalty (the default 10 would forbid echoes and loops).
PLAIN = GenerationParams(max_new_tokens=20, temperature=1.0, top_k=0, repetition_penalty=1.0, length="1")


def scores(tox: float | None, quality: float = 1.0, rejected: list[str] | None = None) -> CandidateScores:
    return CandidateScores(
        text="x",
        toxicity=tox,
        echo=0,
        distinct2=1,
        recent=0,
        length_fit=1,
        garbage=0,
        quality=quality,
        rejected=rejected or [],
    )


def test_the_scores_see_echoes_loops_repeats_and_garbage():
    assert overlap("двач не тот уже", "двач не тот уже") == 1.0
    assert overlap("двач уже не тот", "двач не тот уже") < 0.8  # the same words, another sentence
    assert overlap("анон", "привет анон") == 1.0  # a reply of one word taken from the message
    assert overlap(GOOD_REPLY, "привет анон как дела") == 0.0
    assert distinct2(LOOP_REPLY) < 0.2 and distinct2(GOOD_REPLY) == 1.0
    assert garbage("...!!!") == 1.0 and garbage("hello there") == 0.5 and garbage("ну (да") == 0.25
    assert garbage(GOOD_REPLY) == 0.0


def test_a_stock_phrase_said_twice_loses_to_a_reply_of_its_own():
    stock, specific = "это база, анон", "гречка с маслом лучше любой пиццы"
    reranker = Reranker(lambda text: len(text.split()), None)
    choice = reranker.choose([stock, specific, stock], ["что думаешь про гречку?"], [], "1", "normal")
    assert choice.index == 1 and choice.rule == "only_acceptable"  # 0.5 below the specific one
    assert [c.stock for c in choice.candidates] == [1.0, 0.0, 1.0]
    # Said once, the same phrase is as good as any other reply.
    alone = reranker.choose([stock, specific], ["что думаешь про гречку?"], [], "1", "normal")
    assert [c.stock for c in alone.candidates] == [0.0, 0.0]
    assert alone.candidates[0].quality == alone.candidates[1].quality


def test_rejected_candidates_are_never_chosen_while_another_passed():
    assert pick([scores(0.1, 0.9, ["echo"]), scores(0.5, 0.2)], "soft") == (1, "only_acceptable")
    assert pick([scores(0.1, 0.9, ["loop"]), scores(0.2, 0.8, ["repeat"])], "soft") == (0, "all_rejected")
    assert pick([scores(None, 0.1, ["empty"]), scores(None, -2.0, ["garbage"])], "normal") == (1, "all_rejected")


def test_the_tone_picks_by_toxicity_under_a_ceiling_no_setting_lifts():
    candidates = [scores(0.5), scores(0.1), scores(0.95), scores(0.7)]
    assert pick(candidates, "soft") == (1, "tone_soft")
    assert pick(candidates, "normal") == (0, "tone_normal")  # the middle of 0.1, 0.5, 0.7
    assert pick(candidates, "sharp") == (3, "tone_sharp")  # 0.95 is over the ceiling
    assert SHARP_CEILING < 0.95
    assert pick([scores(0.97), scores(0.93)], "sharp") == (1, "ceiling")  # only over it: the least toxic
    # A candidate of poor quality is not acceptable, whatever its toxicity.
    assert pick([scores(0.2, 1.0), scores(0.8, 1.0 - QUALITY_MARGIN - 0.1)], "sharp") == (0, "only_acceptable")
    assert pick([scores(None, 0.7), scores(None, 0.9)], "sharp") == (1, "quality")  # no classifier
    assert not [name for name in WorkerSettings.model_fields if "ceiling" in name]


@pytest.fixture(scope="module")
def biased_model(tmp_path_factory) -> Path:
    return make_biased_gpt2(tmp_path_factory.mktemp("biased") / "biased-gpt2")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    corpus = [*TINY_CORPUS, *BIAS_TURNS, LOOP_REPLY, FIXED_REPLY, GOOD_REPLY]
    return make_tiny_classifier(tmp_path_factory.mktemp("classifier") / "tox", corpus)


def acceptable(result: GenerationResult) -> list[int]:
    assert result.choice is not None
    cands = result.choice.candidates
    passing = [i for i, c in enumerate(cands) if not c.rejected]
    best = max((cands[i].quality for i in passing), default=0.0)
    return [i for i in passing if cands[i].quality >= best - QUALITY_MARGIN]


def check_choice(result: GenerationResult, turn: str, tone: str, scorer) -> set[str]:
    """The result's choice follows the rules; returns the hard rules its candidates failed."""
    choice = result.choice
    assert choice is not None and len(choice.candidates) == 4  # INFERENCE_CANDIDATES_INTERACTIVE
    assert choice.tone == tone
    chosen = choice.candidates[choice.index]
    assert result.text == chosen.text
    fired: set[str] = set()
    for c in choice.candidates:
        fired |= set(c.rejected)
        expected_rule = {turn: "echo", FIXED_REPLY: "repeat", LOOP_REPLY: "loop"}.get(c.text)
        assert expected_rule is None or expected_rule in c.rejected, (c.text, c.rejected)
    texts = [c.text for c in choice.candidates]
    for c, expected in zip(choice.candidates, scorer.score(texts), strict=True):
        if c.text.strip():  # an empty candidate is not scored
            assert c.toxicity == pytest.approx(expected, abs=1e-3)
    ok = acceptable(result)
    if not ok:
        assert choice.rule == "all_rejected"
        return fired
    assert not chosen.rejected  # a failing candidate is never chosen while another passed
    tox = [choice.candidates[j].toxicity for j in ok]
    if choice.rule == "tone_soft":
        assert chosen.toxicity == min(t for t in tox if t is not None)
    elif choice.rule == "tone_sharp":
        assert chosen.toxicity == max(t for t in tox if t is not None and t <= SHARP_CEILING)
    else:
        assert choice.rule in ("only_acceptable", "tone_normal", "ceiling"), choice.rule
    return fired


async def test_a_worker_chooses_past_echoes_loops_and_repeats_and_explains_why(
    start_worker, private_redis, biased_model: Path, classifier: Path, tmp_path: Path
):
    from shared.toxicity import OnnxToxicityScorer

    metrics_port = free_port()
    worker = start_worker(
        {
            "REDIS_URL": private_redis.url,
            "MODEL_NAME_OR_PATH": str(biased_model),
            "INFERENCE_BACKEND": "onnxruntime",
            "INFERENCE_THREADS": "1",
            "RERANKER_TOXICITY_MODEL": str(classifier),
            "WORKER_METRICS_PORT": str(metrics_port),
        },
        node="reranker@test",
    )
    client = GenerationClient(QueueSettings(redis_url=private_redis.url))
    tones = ["soft", "normal", "sharp"]
    try:
        jobs = [
            await client.submit(
                [BIAS_TURNS[i % len(BIAS_TURNS)]], PLAIN, tone=tones[i % 3], recent_replies=[FIXED_REPLY], timeout_s=120
            )
            for i in range(18)
        ]
        results = await asyncio.gather(*[client.wait(job, 120) for job in jobs])
        bulk = await client.wait(await client.submit([BIAS_TURNS[0]], PLAIN, priority="bulk", timeout_s=120), 120)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    finally:
        await client.close()
        worker.stop()
    assert '"engine": "onnxruntime"' in worker.log_text()  # RERANKER_TOXICITY_ENGINE's default: no torch

    # The worker's classifier runs on ONNX Runtime (the default engine), exported from the same folder.
    scorer = OnnxToxicityScorer(str(classifier), cache_dir=tmp_path, quantization="int8")
    fired: set[str] = set()
    for i, result in enumerate(results):
        fired |= check_choice(result, BIAS_TURNS[i % len(BIAS_TURNS)], tones[i % 3], scorer)
    assert {"echo", "loop", "repeat"} <= fired  # the model did fail each way, and each was caught
    assert sum(r.text == GOOD_REPLY for r in results) > sum(r.text == FIXED_REPLY for r in results)
    assert bulk.choice is not None and bulk.choice.rule == "single"  # INFERENCE_CANDIDATES_BULK=1

    assert "dvach_worker_candidates_per_job_count 19.0" in metrics
    for reason in ("echo", "loop", "repeat"):
        line = next(
            x for x in metrics.splitlines() if x.startswith(f'dvach_worker_rejections_total{{reason="{reason}"}}')
        )
        assert float(line.split()[-1]) > 0
    assert 'dvach_worker_chosen_toxicity_count{tone="soft"}' in metrics

    reader = aioredis.Redis.from_url(private_redis.url)
    try:
        recorded = await ops_state.recent_choices(reader, limit=100)
    finally:
        await reader.aclose()
    assert len(recorded) == 18  # the jobs of several candidates, newest first, with their scores
    assert {r["request_id"] for r in recorded} == set(jobs)
    assert all(r["candidates"][r["index"]]["text"] for r in recorded)
    assert redis.Redis.from_url(private_redis.url).llen(ops_state.CHOICES_KEY) == 18
