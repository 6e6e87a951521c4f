"""The continuous scheduler (decoding_loop.py) on the real ONNX Runtime backend: sequences join and
leave the running batch at any token without changing each other's tokens (float32, greedy),
interactive jobs go first and find a slot under bulk load, a deadline cancels mid-generation and
frees the slot, a freed row gives its memory back, and a worker process serves through it."""

from __future__ import annotations

import asyncio
import mmap
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from services.inference_worker.backends import BackendOptions, load_backend
from services.inference_worker.decoding_loop import DecodingLoop
from services.inference_worker.generation import Generator
from services.inference_worker.scheduler import DeadlineExpired
from shared.generation_client import GenerationClient
from shared.schemas import GenerationParams
from shared.settings import QueueSettings, WorkerSettings

GREEDY = GenerationParams(max_new_tokens=24, top_k=1, repetition_penalty=1.0)
LONG = GenerationParams(max_new_tokens=60, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
DIALOGS = [["а ты чего не спишь"], ["сижу на двачах, как обычно", "привет"], ["анон"], ["кто здесь", "я", "ты"]]


@pytest.fixture(scope="module")
def fp32_generator(wider_model_dir: Path) -> Generator:
    """Random weights: replies practically never end at eos, so sequences run their full length."""
    backend = load_backend("onnxruntime", wider_model_dir, BackendOptions(threads=1, quantization="float32"))
    return Generator(backend)


@pytest.fixture(scope="module")
def trained_fp32(trained_model_dir: Path) -> Generator:
    return Generator(load_backend("onnxruntime", trained_model_dir, BackendOptions(threads=1, quantization="float32")))


def alone(generator: Generator, dialog: list[str], params: GenerationParams) -> tuple[str, int]:
    reply = generator.reply(dialog, params)  # the backend's own batch of one
    return reply.text, reply.new_tokens


def test_a_sequences_tokens_do_not_depend_on_who_joined_or_left(fp32_generator: Generator):
    """A long sequence runs while shorter ones of other lengths join at different tokens (each
    submitted when the one before it left, from the loop's own thread) and leave."""
    lengths = [60, 5, 9, 3, 14, 7]
    params = [GREEDY.model_copy(update={"max_new_tokens": n}) for n in lengths]
    dialogs = [DIALOGS[i % len(DIALOGS)] for i in range(len(lengths))]
    expected = [alone(fp32_generator, d, p) for d, p in zip(dialogs, params, strict=True)]
    loop = DecodingLoop(fp32_generator, slots=3, slot_tokens=128)
    futures: list[Future] = []
    chain_done = threading.Event()

    def submit(i: int) -> None:
        future = loop.submit(dialogs[i], params[i])
        futures.append(future)
        if i + 1 < len(lengths):
            future.add_done_callback(lambda _f: submit(i + 1))  # joins when this one left
        else:
            future.add_done_callback(lambda _f: chain_done.set())

    try:
        with loop._cond:  # the long one and the first short one arrive together
            long_one = loop.submit(dialogs[0], params[0])
            submit(1)
        assert chain_done.wait(120)
        got = [(f.result().text, f.result().new_tokens) for f in [long_one, *futures]]
    finally:
        loop.stop()
    assert got == expected
    assert futures[-1].job.started > long_one.job.started  # the last one joined a running sequence
    assert max(loop.batch_sizes) == 2


def test_float32_greedy_replies_through_the_loop_equal_transformers(trained_model_dir: Path, trained_fp32: Generator):
    reference = Generator(load_backend("transformers", trained_model_dir, BackendOptions(threads=1)))
    params = GenerationParams(max_new_tokens=16, top_k=1, repetition_penalty=1.0)
    dialogs = [["привет анон"], ["двач не тот уже", "привет"], ["кто здесь"], ["тест", "ещё тест", "и ещё"]]
    loop = DecodingLoop(trained_fp32, slots=4)
    try:
        with loop._cond:  # all at once: one prefill, one batch
            futures = [loop.submit(d, params) for d in dialogs]
        got = [f.result(120) for f in futures]
    finally:
        loop.stop()
    want = [reference.reply(d, params) for d in dialogs]
    assert [(r.text, r.new_tokens) for r in got] == [(r.text, r.new_tokens) for r in want]


def test_interactive_jobs_are_admitted_before_bulk_ones(fp32_generator: Generator):
    loop = DecodingLoop(fp32_generator, slots=1, slot_tokens=128)
    finished: list[str] = []
    try:
        with loop._cond:  # all queued before the loop admits any
            futures = {
                name: loop.submit([name], LONG, priority)
                for name, priority in [("b1", "bulk"), ("b2", "bulk"), ("b3", "bulk"), ("i1", "interactive")]
            }
            for name, future in futures.items():
                future.add_done_callback(lambda _f, name=name: finished.append(name))
        for future in futures.values():
            future.result(120)
    finally:
        loop.stop()
    assert finished[0] == "i1"


def test_an_interactive_job_finds_a_slot_while_bulk_jobs_fill_theirs(fp32_generator: Generator):
    """Bulk jobs hold at most `bulk_slots`: a queued bulk job leaves the last slot free, and an
    interactive job arriving mid-generation takes it at the next step."""
    loop = DecodingLoop(fp32_generator, slots=2, bulk_slots=1, slot_tokens=128)
    late: list[Future] = []
    try:
        with loop._cond:
            opener = loop.submit(["открывашка"], GREEDY.model_copy(update={"max_new_tokens": 2}), "interactive")
            bulk = [loop.submit([f"бамп {i}"], LONG, "bulk") for i in range(2)]
            opener.add_done_callback(lambda _f: late.append(loop.submit(["срочно"], LONG, "interactive")))
        opener.result(120)
        urgent = late[0]
        urgent.result(120)
        bulk[1].result(120)
    finally:
        loop.stop()
    assert urgent.job.started < bulk[1].job.started  # the second bulk job did not take the free slot
    assert bulk[1].job.started > bulk[0].job.started


def test_a_deadline_passing_mid_generation_cancels_and_frees_the_slot(fp32_generator: Generator):
    holder: list[DecodingLoop] = []
    # The loop's wall clock is its step count: the deadline passes at the 6th step (after the
    # prefill's token and 6 more), whatever the machine's speed.
    loop = DecodingLoop(fp32_generator, slots=1, slot_tokens=128, wall_clock=lambda: float(holder[0].steps))
    holder.append(loop)
    try:
        # Seeded, so that it runs past the deadline: unseeded, about 1 reply in 70 of this random
        # model says eos within 7 tokens and ends before its deadline (seed 2: 60 tokens, measured).
        doomed = loop.submit(["долгая история"], LONG.model_copy(update={"seed": 2}), deadline=5.0)
        with pytest.raises(DeadlineExpired, match="after 7 tokens"):
            doomed.result(120)
        assert loop.running() == 0
        after = loop.submit(["следующий"], GREEDY)  # the only slot is free again
        assert after.result(120).text
    finally:
        loop.stop()


def resident_pages(array: np.ndarray) -> int:
    """Pages of a contiguous `array` held in memory now (the present bit of /proc/self/pagemap)."""
    address = array.__array_interface__["data"][0]
    first, end = address // mmap.PAGESIZE, -(-(address + array.nbytes) // mmap.PAGESIZE)
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(first * 8)
        entries = np.frombuffer(pagemap.read((end - first) * 8), dtype=np.uint64)
    return int(np.count_nonzero(entries >> np.uint64(63)))


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/pagemap")


@linux_only
def test_a_row_moved_or_freed_gives_its_pages_back(fp32_generator: Generator):
    """Without this, a row keeps the pages of the longest sequence it ever held. (Pages are
    counted before anything reads the rows: a read maps the system's shared zero page.)"""
    slots = fp32_generator.backend.open_slots(2, 128)  # type: ignore[attr-defined]
    slots.prefill(0, [list(range(1, 101))])
    slots.prefill(1, [list(range(1, 11))])
    long_pages, short_pages = resident_pages(slots.cache[0][0]), resident_pages(slots.cache[0][1])
    assert long_pages > short_pages > 0
    short = [buffer[1, :, :10].copy() for buffer in slots.cache]

    slots.move(1, 0)  # row 1's sequence takes the place of row 0's, which ended
    assert [resident_pages(buffer[0]) for buffer in slots.cache] == [short_pages] * len(slots.cache)
    assert [resident_pages(buffer[1]) for buffer in slots.cache] == [0] * len(slots.cache)
    assert list(slots.lengths) == [10, 0]
    assert all(np.array_equal(buffer[0, :, :10], row) for buffer, row in zip(slots.cache, short, strict=True))

    slots.free(0)
    assert sum(resident_pages(buffer) for buffer in slots.cache) == 0
    assert not any(buffer.any() for buffer in slots.cache)  # and they read as zeros


@linux_only
def test_the_cache_holds_no_pages_once_every_sequence_left(fp32_generator: Generator):
    loop = DecodingLoop(fp32_generator, slots=3, slot_tokens=128)
    try:
        with loop._cond:  # together, so that they leave in other orders than they joined
            futures = [
                loop.submit(DIALOGS[i % 4], GREEDY.model_copy(update={"max_new_tokens": n}))
                for i, n in enumerate((20, 3, 9))
            ]
        for future in futures:
            assert future.result(120).text
    finally:
        loop.stop()
        loop._thread.join(30)
    assert loop._cache is not None and max(loop.batch_sizes) == 3
    assert sum(resident_pages(buffer) for buffer in loop._cache.cache) == 0


def test_seeded_jobs_run_alone_and_reproduce(fp32_generator: Generator):
    seeded = GenerationParams(max_new_tokens=12, seed=7)
    loop = DecodingLoop(fp32_generator, slots=4, slot_tokens=128)
    try:
        with loop._cond:
            futures = [loop.submit([f"вопрос {i}"], seeded if i % 2 else LONG) for i in range(4)]
        results = [f.result(120) for f in futures]
        again = loop.submit(["вопрос 1"], seeded).result(120)
    finally:
        loop.stop()
    assert all(futures[i].job.batch_size == 1 for i in (1, 3))  # nothing ran beside a seeded job
    assert again.text == results[1].text


def test_a_worker_with_the_continuous_scheduler_takes_one_job_per_slot():
    from services.inference_worker.__main__ import job_slots

    settings = WorkerSettings(redis_url="redis://unused", inference_scheduler="continuous")
    assert job_slots(settings) == 16
    assert job_slots(settings.model_copy(update={"inference_slots": 6})) == 6
    assert job_slots(settings.model_copy(update={"inference_backend": "ctranslate2"})) == 16  # batch: 2 x 8


async def test_a_worker_serves_replies_through_the_decoding_loop(start_worker, private_redis, wider_model_dir: Path):
    env = {
        "REDIS_URL": private_redis.url,
        "MODEL_NAME_OR_PATH": str(wider_model_dir),
        "INFERENCE_BACKEND": "onnxruntime",
        "INFERENCE_SCHEDULER": "continuous",
        "INFERENCE_SLOTS": "3",
        "INFERENCE_THREADS": "1",
    }
    worker = start_worker(env, node="continuous@test")
    client = GenerationClient(QueueSettings(redis_url=private_redis.url))
    try:
        ids = [await client.submit([f"реплика {i}"], LONG, timeout_s=120) for i in range(5)]
        results = await asyncio.gather(*[client.wait(job_id, 120) for job_id in ids])
    finally:
        await client.close()
        worker.stop()
    assert all(r.text and r.worker == "continuous@test" for r in results)
    log = worker.log_text()
    assert '"cache slots opened"' in log and '"slots": 12' in log  # 3 jobs x 4 candidates (interactive default)


def test_a_job_cancelled_while_it_waits_is_skipped(fp32_generator: Generator):
    loop = DecodingLoop(fp32_generator, slots=1, slot_tokens=128)
    try:
        with loop._cond:  # both queued before the loop admits either
            first = loop.submit(["первый"], GREEDY)
            second = loop.submit(["второй"], GREEDY)
            assert second.cancel()
        assert first.result(120).text
        assert loop.submit(["третий"], GREEDY).result(120).text  # the loop carried on
    finally:
        loop.stop()
    assert second.cancelled()
