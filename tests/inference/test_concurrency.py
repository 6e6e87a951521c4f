"""Several jobs at once on one loaded model, interactive jobs first: in process (the scheduler
on each real fast backend) and through the queue (one real worker process, threads pool)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from services.inference_worker.backends import BackendOptions, load_backend
from services.inference_worker.conversion import ensure_converted
from services.inference_worker.decoding_loop import DecodingLoop
from services.inference_worker.generation import Generator
from services.inference_worker.scheduler import DeadlineExpired, Scheduler
from shared.generation_client import GenerationClient
from shared.schemas import GenerationParams
from shared.settings import QueueSettings, WorkerSettings
from tests.processes import child_pids

# Long enough replies that jobs surely overlap with the ones submitted right after them.
LONG = GenerationParams(max_new_tokens=60, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)


FAST = ["onnxruntime", "ctranslate2"]


@pytest.fixture(scope="module")
def converted_wider(wider_model_dir: Path) -> Path:
    for engine in FAST:
        ensure_converted(wider_model_dir, "int8", engine=engine)
    return wider_model_dir


@pytest.fixture(scope="module", params=FAST)
def two_lane_generator(request, converted_wider: Path) -> Generator:
    backend = load_backend(request.param, converted_wider, BackendOptions(lanes=2, threads_per_lane=1))
    assert backend.lanes == 2
    return Generator(backend)


def run_and_record(scheduler: Scheduler, jobs: list[tuple[str, str]]) -> dict[str, float]:
    """Submit (name, priority) jobs in order; return each one's finishing order index."""
    finished: list[str] = []
    lock = threading.Lock()
    futures = []
    for name, priority in jobs:
        future = scheduler.submit([f"вопрос {name}"], LONG, priority)  # type: ignore[arg-type]

        def done(_future, name=name) -> None:
            with lock:
                finished.append(name)

        future.add_done_callback(done)
        futures.append(future)
    for future in futures:
        assert future.result(timeout=120).text
    return {name: i for i, name in enumerate(finished)}


class ManualClock:
    """The scheduler's clock, moved by the test: a burst arrives "at once" however long the test
    thread takes to submit it on a loaded machine, and it is over when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_jobs_submitted_together_run_at_once_on_one_model(two_lane_generator: Generator):
    clock = ManualClock()
    scheduler = Scheduler(two_lane_generator, lanes=2, max_batch=8, batch_wait_s=0.05, clock=clock)
    lock = threading.Lock()
    started_at_first_end: list[int] = []
    try:
        futures = [scheduler.submit([f"сообщение {i}"], LONG) for i in range(6)]
        jobs = [future.job for future in futures]

        def done(_future) -> None:
            with lock:
                if not started_at_first_end:
                    started_at_first_end.append(sum(job.started is not None for job in jobs))

        for future in futures:
            future.add_done_callback(done)
        clock.advance(1.0)  # the burst is over: no job joined for longer than batch_wait_s
        for future in futures:
            future.result(timeout=120)
    finally:
        scheduler.stop()
    assert sorted(job.batch_size for job in jobs) == [3] * 6  # 6 jobs spread evenly over 2 free lanes
    # Every job had started before the first one finished: they overlapped (batched over 2 lanes).
    assert started_at_first_end == [6]


def test_lanes_that_share_the_cores_fill_one_lane_first(two_lane_generator: Generator):
    """spread=False (each lane may use every core): a burst is one batch while it fits, so the
    second lane stays free; past max_batch the rest waits for that lane rather than share the
    cores beside it (the second lane is for interactive jobs overtaking bulk ones)."""
    clock = ManualClock()
    scheduler = Scheduler(two_lane_generator, lanes=2, max_batch=4, batch_wait_s=0.05, spread=False, clock=clock)
    lock = threading.Lock()
    started_when_first_batch_ended: list[int] = []
    try:
        six = [scheduler.submit([f"сообщение {i}"], LONG) for i in range(6)]
        jobs = [f.job for f in six]

        def done(future) -> None:
            if future.job.batch_size == 4:
                with lock:
                    started_when_first_batch_ended.append(sum(job.started is not None for job in jobs))

        for future in six:
            future.add_done_callback(done)
        clock.advance(1.0)
        [f.result(timeout=120) for f in six]
        three = [scheduler.submit([f"ещё {i}"], LONG) for i in range(3)]
        clock.advance(1.0)
        [f.result(timeout=120) for f in three]
    finally:
        scheduler.stop()
    assert sorted(f.job.batch_size for f in six) == [2, 2, 4, 4, 4, 4]
    # As each job of the first batch finished, only that batch had started: the second one ran
    # after it, not beside it.
    assert started_when_first_batch_ended == [4, 4, 4, 4]
    assert [f.job.batch_size for f in three] == [3, 3, 3]


def test_a_burst_arriving_over_longer_than_the_wait_is_still_one_batch(two_lane_generator: Generator):
    """Jobs keep joining while each arrives within batch_wait_s of the previous one, even when the
    whole burst takes longer than batch_wait_s (bounded by batch_max_wait_s)."""
    clock = ManualClock()
    scheduler = Scheduler(
        two_lane_generator, lanes=2, max_batch=8, batch_wait_s=0.5, batch_max_wait_s=5.0, spread=False, clock=clock
    )
    try:
        futures = []
        for i in range(5):
            futures.append(scheduler.submit([f"волна {i}"], LONG))
            clock.advance(0.15)  # 5 jobs 0.15 s apart: 0.6 s in all, longer than batch_wait_s
        clock.advance(1.0)  # then nothing for longer than batch_wait_s
        [f.result(timeout=120) for f in futures]
    finally:
        scheduler.stop()
    assert [f.job.batch_size for f in futures] == [5] * 5


def test_interactive_job_overtakes_a_pile_of_bulk_jobs(two_lane_generator: Generator):
    """Judged by when jobs started, on the scheduler's clock: which finishes first also depends on
    how long each sampled reply is (an empty one is sampled again), which is not the rule under test."""
    scheduler = Scheduler(two_lane_generator, lanes=2, max_batch=2, batch_wait_s=0.0)
    try:
        bulk = [scheduler.submit([f"вопрос {i}"], LONG, "bulk") for i in range(10)]
        hurry = scheduler.submit(["срочно"], LONG, "interactive")
        assert all(f.result(timeout=120).text for f in [*bulk, hurry])
    finally:
        scheduler.stop()
    started = hurry.job.started  # type: ignore[attr-defined]
    bulk_before = sum(1 for f in bulk if f.job.started < started)  # type: ignore[attr-defined]
    # The bulk lane's first batch (2 jobs) may be running when it arrives; it takes the other lane.
    assert bulk_before <= 2, f"{bulk_before} bulk jobs started before the interactive one"


def test_the_batch_scheduler_drops_a_job_whose_deadline_passed(two_lane_generator: Generator):
    scheduler = Scheduler(two_lane_generator, lanes=2)
    try:
        with pytest.raises(DeadlineExpired):
            scheduler.reply(["поздно"], LONG, deadline=time.time() - 1, timeout=120)
        assert scheduler.reply(["вовремя"], LONG, deadline=time.time() + 600, timeout=120).text
    finally:
        scheduler.stop()


def test_seeded_jobs_are_not_batched(two_lane_generator: Generator):
    scheduler = Scheduler(two_lane_generator, lanes=2, max_batch=8, batch_wait_s=0.05)
    try:
        params = GenerationParams(max_new_tokens=8, seed=4)
        futures = [scheduler.submit(["одно и то же"], params) for _ in range(3)]
        replies = [f.result(timeout=120) for f in futures]
    finally:
        scheduler.stop()
    assert all(f.job.batch_size == 1 for f in futures)
    assert len({r.text for r in replies}) == 1  # same seed, same dialog: same reply


def fast_env(redis_url: str, model_dir: Path, backend: str = "ctranslate2", **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "MODEL_NAME_OR_PATH": str(model_dir),
        "INFERENCE_BACKEND": backend,
        "INFERENCE_LANES": "2",
        "INFERENCE_THREADS_PER_LANE": "1",
        **extra,
    }


@pytest.mark.parametrize("backend", FAST)
async def test_one_worker_process_runs_jobs_at_once_with_one_model(
    start_worker, private_redis, converted_wider, backend
):
    node = f"lanes-{backend}@test"  # one log file per node name
    worker = start_worker(fast_env(private_redis.url, converted_wider, backend), node=node)
    client = GenerationClient(QueueSettings(redis_url=private_redis.url))
    try:
        submitted = {}
        ids = []
        for i in range(6):
            submitted_at = time.time()
            job_id = await client.submit([f"реплика {i}"], LONG, timeout_s=120)
            submitted[job_id] = submitted_at
            ids.append(job_id)
        results = dict(zip(ids, await asyncio.gather(*[client.wait(job_id, 120) for job_id in ids]), strict=True))
        assert child_pids(worker.pid) == []  # a threads pool: the jobs ran in the worker process itself
    finally:
        await client.close()
        worker.stop()
    starts = {j: submitted[j] + r.queue_ms / 1000 for j, r in results.items()}
    ends = {j: starts[j] + r.generate_ms / 1000 for j, r in results.items()}
    assert {r.worker for r in results.values()} == {node}
    # Most jobs running at one moment (a job counts from its start to its end): at least two
    # must have run at once in this one process; a loaded CI machine may spread the rest out.
    running_at_a_start = max(sum(starts[j] <= t < ends[j] for j in results) for t in starts.values())
    assert running_at_a_start >= 2, "the jobs did not overlap in one worker"
    log = worker.log_text()
    assert log.count('"model loaded"') == 1  # one copy of the weights in the process
    assert f'"backend": "{backend}"' in log and '"lanes": 2' in log


async def test_interactive_job_is_taken_before_queued_bulk_jobs(start_worker, private_redis, converted_wider):
    # One candidate per job: the order is measured here, not the cost of candidates (bench.candidates).
    env = fast_env(
        private_redis.url,
        converted_wider,
        INFERENCE_MAX_BATCH="2",
        INFERENCE_SLOTS="4",
        INFERENCE_CANDIDATES_INTERACTIVE="1",
    )
    worker = start_worker(env, node="priority@test")
    client = GenerationClient(QueueSettings(redis_url=private_redis.url))
    try:
        bulk = [await client.submit([f"бамп {i}"], LONG, priority="bulk", timeout_s=240) for i in range(12)]
        hurry = await client.submit(["срочно"], LONG, priority="interactive", timeout_s=240)
        finished: list[str] = []

        async def wait(job_id: str) -> None:
            await client.wait(job_id, 240)
            finished.append(job_id)

        await asyncio.gather(*[wait(job_id) for job_id in [*bulk, hurry]])
    finally:
        await client.close()
        worker.stop()
    assert finished.index(hurry) <= 6, f"{finished.index(hurry)} of 12 bulk jobs finished before the interactive one"


@pytest.mark.parametrize("backend", FAST)
def test_reply_end_to_end_through_gateway_with_a_fast_backend(
    start_worker, start_gateway, private_redis, converted_wider, backend
):
    """The generation flow of tests/test_generation_flow.py, served by each fast backend."""
    import httpx

    env = fast_env(private_redis.url, converted_wider, backend)
    worker = start_worker(env, node=f"fast-{backend}@test")
    gateway = start_gateway(env)
    try:
        response = httpx.post(
            gateway.base_url + "/v1/replies",
            json={"dialog": ["а ты чего не спишь", "сижу на двачах"], "params": {"max_new_tokens": 12}},
            timeout=60,
        )
    finally:
        gateway.stop()
        worker.stop()
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["text"] and body["worker"] == f"fast-{backend}@test" and 1 <= body["new_tokens"] <= 36 * 4
    )  # 4 candidates
    assert f'"backend": "{backend}"' in worker.log_text()


def test_default_onnxruntime_layout_gives_every_lane_all_cores(converted_wider: Path):
    """Measured best on 2 cores (docs/inference.md): two lanes (one stays free for an interactive
    job), each run on all the cores; a burst fills one lane first (one batch of 8 ran 1.2 s, two
    batches of 4 at once 1.9 s)."""
    from services.inference_worker.__main__ import job_slots
    from services.inference_worker.runtime import make_scheduler

    backend = load_backend("auto", converted_wider, BackendOptions(threads=2))
    assert (backend.name, backend.lanes, backend.threads_per_lane) == ("onnxruntime", 2, 2)
    settings = WorkerSettings(redis_url="redis://unused", inference_scheduler="batch")
    scheduler = make_scheduler(Generator(backend), backend, settings)
    assert isinstance(scheduler, Scheduler) and not scheduler.spread
    scheduler.stop()
    # The default on onnxruntime is the continuous scheduler (docs/inference.md, "Continuous batching").
    loop = make_scheduler(Generator(backend), backend, WorkerSettings(redis_url="redis://unused"))
    assert isinstance(loop, DecodingLoop) and loop.slots == 16  # 16 jobs of one candidate (the default)
    loop.stop()
    # With candidates on, the 16 rows hold 4 jobs of 4; the worker takes only those from Redis.
    four = WorkerSettings(redis_url="redis://unused", inference_candidates_interactive=4)
    loop = make_scheduler(Generator(backend), backend, four)
    assert loop.slots == 16 and job_slots(four) == 4
    loop.stop()


def test_default_ctranslate2_layout_follows_the_model_width(converted_wider: Path, tmp_path: Path):
    """Measured best on 2 cores (docs/inference.md): lanes split the cores for a 355M-class model,
    every lane uses all of them from 2048 wide; the scheduler spreads a burst only in the first case."""
    from services.inference_worker.ctranslate2_backend import default_threads_per_lane, model_width
    from services.inference_worker.runtime import make_scheduler

    assert model_width(converted_wider) > 0
    backend = load_backend("ctranslate2", converted_wider, BackendOptions(threads=2))
    assert (backend.lanes, backend.threads_per_lane) == (2, 1)
    scheduler = make_scheduler(Generator(backend), backend, WorkerSettings(redis_url="redis://unused"))
    assert scheduler.spread
    scheduler.stop()
    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "config.json").write_text('{"n_embd": 2048}')
    assert model_width(wide) == 2048
    assert default_threads_per_lane(2, 2, model_width(wide)) == 2
    assert default_threads_per_lane(8, 4, 1024) == 2
    assert model_width(tmp_path / "missing") == 0


def test_a_threads_pool_worker_takes_enough_jobs_for_every_lane_to_fill_a_batch():
    from services.inference_worker.__main__ import job_slots

    batch = WorkerSettings(redis_url="redis://unused", inference_scheduler="batch", inference_threads=2)
    assert job_slots(batch) == 2 * 8
    assert job_slots(batch.model_copy(update={"inference_lanes": 3, "inference_max_batch": 4})) == 12
    assert job_slots(WorkerSettings(redis_url="redis://unused", inference_slots=5)) == 5
