"""Several jobs at once on one loaded model: micro-batches on parallel lanes, interactive first.

Callers (Celery task threads) `submit` a job and wait on its future. A dispatcher thread hands
batches to `backend.lanes` lane threads; each lane runs one `Generator.reply_many` at a time, and
the backend runs the lanes in parallel on the same weights (CTranslate2's replicas).

How a batch is formed, when a lane is free:
- the oldest interactive job goes first, else the oldest bulk job;
- jobs with the same sampling parameters join it (interactive ones first), up to `max_batch`;
  when the lanes split the cores between them (`spread`), the jobs are spread evenly over the free
  lanes (8 jobs on 2 free lanes: 4 and 4); when every lane may use all the cores (the default
  for models 2048 wide), one lane is filled first (8 and 0): there two lanes running at once
  share the cores and gain nothing over one (measured: docs/inference.md), and the idle lane
  stays free for an interactive job that arrives meanwhile;
- a job with a seed runs alone (its reply must not depend on what it was batched with);
- a burst's jobs arrive a few milliseconds apart through the queue, so the dispatcher waits until
  no job has joined for `batch_wait_s`, at most `batch_max_wait_s` after the first one arrived;
  a job that already waited for a lane starts at once.
Bulk jobs use at most `bulk_lanes` lanes at a time, so that an interactive job finds a lane without
waiting for a bulk batch to end (when the worker has more than one lane). When every lane uses all
the cores (not `spread`), a second interactive batch does not start beside a running one: the two
would only share the cores (onnxruntime, 355M: two batches of 8 at once ran 3.5 replies/s under
steady load, one after the other 4.55), so the jobs wait for the lane and go as one bigger batch;
an interactive batch still starts at once beside a bulk one.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal

from services.inference_worker.generation import Generator, Reply
from shared.schemas import GenerationParams

log = logging.getLogger(__name__)

Priority = Literal["interactive", "bulk"]


class DeadlineExpired(Exception):
    """The caller's deadline passed before the job's reply was ready: not generated (or cut)."""


@dataclass
class Job:
    dialog: list[str]
    params: GenerationParams
    priority: Priority
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)  # on the scheduler's clock
    started: float | None = None  # when its batch started (the scheduler's clock)
    batch_size: int = 0
    deadline: float | None = None  # wall-clock time after which the caller no longer wants it

    @property
    def batch_key(self) -> tuple:
        if self.params.seed is not None:
            return ("alone", id(self))
        return tuple(sorted(self.params.model_dump().items()))


class JobQueue:
    """What callers see of a worker process's scheduler (the batch `Scheduler` here, the continuous
    `DecodingLoop`): jobs queued by priority, each answered through a future."""

    name = "scheduler"

    def __init__(self, generator: Generator | Callable[[], Generator], clock: Callable[[], float]):
        # A callable is read for each batch or admission (the served model may be switched while running).
        self._generator = generator if callable(generator) else (lambda: generator)
        self.pid = os.getpid()
        self._clock = clock
        self._queues: dict[Priority, deque[Job]] = {"interactive": deque(), "bulk": deque()}
        self._cond = threading.Condition()
        self._stopping = False

    def submit(
        self,
        dialog: list[str],
        params: GenerationParams,
        priority: Priority = "interactive",
        deadline: float | None = None,
    ) -> Future:
        """Queue a job; its future gives a `Reply` (or raises what generation raised, or
        DeadlineExpired when `deadline`, a wall-clock time, passes before the reply is ready)."""
        job = Job(list(dialog), params, priority, arrived=self._clock(), deadline=deadline)
        job.future.job = job  # type: ignore[attr-defined]  # lets callers read timings
        with self._cond:
            if self._stopping:
                raise RuntimeError(f"the {self.name} is stopped")
            self._queues[priority].append(job)
            self._cond.notify_all()
        return job.future

    def reply(
        self,
        dialog: list[str],
        params: GenerationParams,
        priority: Priority = "interactive",
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Reply:
        return self.submit(dialog, params, priority, deadline).result(timeout)

    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()


class Scheduler(JobQueue):
    def __init__(
        self,
        generator: Generator | Callable[[], Generator],
        *,
        lanes: int = 1,
        max_batch: int = 8,
        batch_wait_s: float = 0.008,
        batch_max_wait_s: float | None = None,
        bulk_lanes: int | None = None,
        spread: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(generator, clock)
        self.lanes = max(1, lanes)
        self.max_batch = max(1, max_batch)
        self.batch_wait_s = batch_wait_s
        self.batch_max_wait_s = max(
            batch_wait_s, batch_max_wait_s if batch_max_wait_s is not None else 5 * batch_wait_s
        )
        self.spread = spread
        self.bulk_lanes = max(1, min(self.lanes, bulk_lanes if bulk_lanes else max(1, self.lanes - 1)))
        self._idle = self.lanes
        self._bulk_running = 0
        self._interactive_running = 0
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # recent batch sizes, for the bench and logs
        self._lane_inbox: list[deque[list[Job]]] = [deque() for _ in range(self.lanes)]
        self._lane_busy = [False] * self.lanes
        self._threads = [threading.Thread(target=self._dispatch, name="scheduler", daemon=True)]
        self._threads += [
            threading.Thread(target=self._lane, args=(i,), name=f"lane-{i}", daemon=True) for i in range(self.lanes)
        ]
        for thread in self._threads:
            thread.start()

    # --- dispatcher ---------------------------------------------------------------------------
    def _first(self) -> Job | None:
        """The job that goes next: the oldest interactive, else the oldest bulk one if allowed."""
        if self._queues["interactive"] and (self.spread or self._interactive_running == 0):
            return self._queues["interactive"][0]
        if self._queues["bulk"] and self._bulk_running < self.bulk_lanes:
            return self._queues["bulk"][0]
        return None

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (self._idle == 0 or self._first() is None):
                    self._cond.wait()
                if self._stopping:
                    return
                head = self._first()
                assert head is not None
                # Give a burst time to arrive, unless the head job already waited or the batch is full:
                # until no job joined for batch_wait_s, at most batch_max_wait_s after the head.
                limit = head.arrived + self.batch_max_wait_s
                while self._compatible_count(head) < self._wanted(head):
                    until = min(limit, self._newest_compatible(head) + self.batch_wait_s)
                    now = self._clock()
                    if now >= until:
                        break
                    self._cond.wait(until - now)  # real seconds: a test's clock is read again after it
                    if self._stopping:
                        return
                head = self._first() or head
                batch = self._take_batch(head)
                lane = self._lane_busy.index(False)
                self._lane_busy[lane] = True
                self._idle -= 1
                if head.priority == "bulk":
                    self._bulk_running += 1
                else:
                    self._interactive_running += 1
                self._lane_inbox[lane].append(batch)
                self._cond.notify_all()

    def _wanted(self, head: Job) -> int:
        """How many jobs would fill what the free lanes take at once."""
        return self.max_batch * (self._idle if self.spread else 1)

    def _newest_compatible(self, head: Job) -> float:
        key = head.batch_key
        return max(
            (job.arrived for q in self._queues.values() for job in q if job.batch_key == key), default=head.arrived
        )

    def _compatible_count(self, head: Job) -> int:
        key = head.batch_key
        if key[0] == "alone":
            return self.max_batch * self.lanes  # nothing joins it: no reason to wait
        return sum(1 for q in self._queues.values() for job in q if job.batch_key == key)

    def _take_batch(self, head: Job) -> list[Job]:
        """Remove `head` and the jobs that join it from the queues (interactive ones first)."""
        key = head.batch_key
        lanes = self._idle if self.spread else 1
        size = 1 if key[0] == "alone" else max(1, min(self.max_batch, math.ceil(self._compatible_count(head) / lanes)))
        self._queues[head.priority].remove(head)
        batch = [head]
        for priority in ("interactive", "bulk"):
            queue = self._queues[priority]
            for job in list(queue):
                if len(batch) >= size:
                    break
                if job.batch_key == key:
                    batch.append(job)
                    queue.remove(job)
        return batch

    # --- lanes --------------------------------------------------------------------------------
    def _lane(self, index: int) -> None:
        while True:
            with self._cond:
                while not self._lane_inbox[index] and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._lane_inbox[index]:
                    return
                batch = self._lane_inbox[index].popleft()
            self._run(batch)
            with self._cond:
                self._lane_busy[index] = False
                self._idle += 1
                if batch[0].priority == "bulk":
                    self._bulk_running -= 1
                else:
                    self._interactive_running -= 1
                self._cond.notify_all()

    def _run(self, batch: list[Job]) -> None:
        now = time.time()
        late = [job for job in batch if job.deadline is not None and now > job.deadline]
        for job in late:
            job.future.set_exception(
                DeadlineExpired(f"deadline passed {now - (job.deadline or now):.1f}s before its batch")
            )
        batch = [job for job in batch if job not in late]  # a new list: the lane still reads the one it was given
        if not batch:
            return
        started = self._clock()
        for job in batch:
            job.started, job.batch_size = started, len(batch)
        self.batch_sizes.append(len(batch))
        log.info(
            "batch started",
            extra={
                "size": len(batch),
                "priority": batch[0].priority,
                "waited_ms": round((started - batch[0].arrived) * 1000, 1),
            },
        )
        try:
            replies = self._generator().reply_many([job.dialog for job in batch], batch[0].params)
        except Exception as exc:  # noqa: BLE001 - not swallowed: each caller's future raises it
            if len(batch) > 1:
                # Run the jobs alone so that one bad job does not fail the others.
                for job in batch:
                    self._run([job])
                return
            batch[0].future.set_exception(exc)
            return
        for job, reply in zip(batch, replies, strict=True):
            job.future.set_result(reply)
