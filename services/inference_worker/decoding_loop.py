"""Iteration-level scheduling: one decoding loop per worker process, jobs join at the next token.

The loop is a thread that owns a fixed pool of key/value cache slots (the backend's
`open_slots`: onnxruntime_backend.CacheSlots). At every step it:
1. fails the jobs whose deadline passed (queued or mid-generation: `DeadlineExpired`, the error
   kind the gateway already knows) and frees their slots;
2. admits waiting jobs into free slots, interactive ones first (bulk jobs may hold at most
   `bulk_slots`, so an interactive job finds a free slot at the next step even under a pile of
   bulk work); new jobs are prefilled, those of close prompt lengths together, straight into
   their slots, and sample their first token from that run;
3. runs one graph call for every sequence in the pool (each at its own position) and samples each
   one's next token with its own parameters (sampling.py: transformers' semantics);
4. retires the sequences that ended (eos, `max_new_tokens`, or a full slot) at once; their slots
   are free for the next step's admissions.
A reply that comes out empty is sampled again from the start (as Generator.reply_many does), up
to the generator's `attempts`.

Jobs with different sampling parameters share steps (sampling is per row). A job with a seed
runs alone: with int8 weights the activations are quantized with one scale per run, so its
logits would depend on the other rows, and a seeded reply must be reproducible; it waits for the
running sequences to end and nothing joins it. In float32 a sequence's tokens do not depend on
which others joined or left (tested: tests/inference/test_decoding_loop.py).

The interface is the batch scheduler's (scheduler.py): `submit` / `reply` / `pending` / `stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from services.inference_worker.generation import EmptyGeneration, Generator, Reply
from services.inference_worker.onnxruntime_backend import prefill_groups
from services.inference_worker.sampling import ban, draw, penalise
from services.inference_worker.scheduler import DeadlineExpired, Job, JobQueue

if TYPE_CHECKING:
    from services.inference_worker.onnxruntime_backend import CacheSlots

log = logging.getLogger(__name__)

DEFAULT_SLOTS = 16
MAX_NEW_TOKENS = 256  # the API's ceiling (shared/schemas.py): a slot holds a full prompt and this


def supports_slots(backend) -> bool:
    """Whether `backend` has the step API the loop needs (onnxruntime does; ctranslate2 does not:
    docs/inference.md, "Continuous batching")."""
    return callable(getattr(backend, "open_slots", None))


@dataclass
class _Group:
    """One job's candidates (`params.candidates`, 1 by default): one prefill of the prompt, whose
    key/value rows are copied to the other candidates' slots; each candidate samples on its own."""

    job: Job
    generator: Generator
    prompt: list[int]
    steps: int  # tokens each candidate may generate
    n: int  # candidates
    attempt: int = 0
    spent: int = 0  # tokens of earlier, empty attempts and of finished candidates
    texts: list[str | None] = field(default_factory=list)  # per candidate, once finished

    @property
    def alone(self) -> bool:
        return self.job.params.seed is not None


@dataclass
class _Sequence:
    group: _Group
    index: int  # which candidate of its group
    rng: np.random.Generator
    seen: np.ndarray
    banned: np.ndarray  # token ids never drawn (the codec's special tokens but eos)
    eos_id: int
    new: list[int] = field(default_factory=list)
    next_token: int = 0

    @property
    def job(self) -> Job:
        return self.group.job

    @property
    def steps(self) -> int:
        return self.group.steps

    @property
    def alone(self) -> bool:
        return self.group.alone


def candidates_of(job: Job, slots: int) -> int:
    """How many candidates `job` samples: its parameter (the worker fills it per queue), at most the slots."""
    return max(1, min(job.params.candidates or 1, slots))


class DecodingLoop(JobQueue):
    name = "decoding loop"

    def __init__(
        self,
        generator: Generator | Callable[[], Generator],
        *,
        slots: int = DEFAULT_SLOTS,
        slot_tokens: int | None = None,
        bulk_slots: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        super().__init__(generator, clock)
        self.slots = max(1, slots)
        self.slot_tokens = slot_tokens
        self.bulk_slots = max(1, min(self.slots, bulk_slots if bulk_slots else self.slots - max(1, self.slots // 4)))
        self._wall = wall_clock
        self._retries: deque[_Group] = deque()  # all-empty replies to sample again, first in line
        self._rows: list[_Sequence] = []  # row i of the cache slots is self._rows[i]
        self._cache: CacheSlots | None = None  # the backend's slots, opened on first admission
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # rows per step, recent (bench, logs)
        self.steps = 0
        self.prefilled_rows = 0  # prompts prefilled (one per job, whatever its candidates)
        self._thread = threading.Thread(target=self._loop, name="decoding-loop", daemon=True)
        self._thread.start()

    # --- callers (JobQueue's submit, reply and stop) -------------------------------------------
    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values()) + len(self._retries)

    def running(self) -> int:
        return len(self._rows)

    # --- the loop -----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._rows and not self._waiting():
                    self._cond.wait()
                if self._stopping:
                    self._fail_all(RuntimeError("the decoding loop stopped"))
                    return
                admitted = self._take_admissions()
            try:
                self._expire()
                if admitted:
                    self._admit(admitted)
                if self._rows:
                    self._step()
            except Exception as exc:  # a failed run fails the sequences it held, not the loop
                log.exception("decoding step failed")
                self._fail_rows(exc)

    def _waiting(self) -> bool:
        return bool(self._retries or self._queues["interactive"] or self._queues["bulk"])

    def _take_admissions(self) -> list[Job | _Group]:
        """Jobs (and retries) for the free slots, interactive first (a job takes one slot per
        candidate); called with the lock held."""
        if any(seq.alone for seq in self._rows):
            return []  # a seeded sequence runs alone
        free = self.slots - len(self._rows)
        bulk_free = self.bulk_slots - sum(seq.job.priority == "bulk" for seq in self._rows)
        taken: list[Job | _Group] = []
        while self._retries and free >= self._retries[0].n:
            group = self._retries[0]
            if group.alone and (self._rows or taken):
                return taken
            taken.append(self._retries.popleft())
            free -= group.n
            bulk_free -= group.n if group.job.priority == "bulk" else 0
            if group.alone:
                return taken
        for priority in ("interactive", "bulk"):
            queue = self._queues[priority]
            while queue:
                job = queue[0]
                n = candidates_of(job, self.slots)
                if free < n or (priority == "bulk" and bulk_free < n):
                    break
                if job.params.seed is not None and (self._rows or taken):
                    return taken  # it waits for the pool to empty; nothing overtakes it
                taken.append(queue.popleft())
                free -= n
                bulk_free -= n if priority == "bulk" else 0
                if job.params.seed is not None:
                    return taken
        return taken

    def _expire(self) -> None:
        """Fail the running sequences whose deadline passed, and free their rows."""
        now = self._wall()
        gone = [row for row, seq in enumerate(self._rows) if seq.job.deadline is not None and now > seq.job.deadline]
        for row in gone:
            seq = self._rows[row]
            if seq.job.future.done():
                continue  # another candidate of the same job failed it already
            late, tokens = now - (seq.job.deadline or now), len(seq.new)
            log.info("deadline passed mid-generation, cancelled", extra={"tokens": tokens})
            seq.job.future.set_exception(DeadlineExpired(f"deadline passed {late:.1f}s ago, after {tokens} tokens"))
        self._retire(gone)

    def _slots_for(self, generator: Generator) -> CacheSlots:
        backend = generator.backend
        if self._cache is None or self._cache.backend is not backend:
            self._cache = None  # the old pool's memory goes before the new one is allocated
            tokens = self.slot_tokens or generator.max_context_tokens + MAX_NEW_TOKENS
            cache: CacheSlots = backend.open_slots(self.slots, tokens)  # type: ignore[attr-defined]
            log.info(
                "cache slots opened",
                extra={"slots": self.slots, "slot_tokens": cache.slot_tokens, "mb": cache.nbytes >> 20},
            )
            self._cache = cache
        return self._cache

    def _admit(self, admitted: list[Job | _Group]) -> None:
        now_wall, generator = self._wall(), self._generator()
        groups: list[_Group] = []
        for item in admitted:
            if isinstance(item, _Group):
                groups.append(item)
                continue
            job = item
            if not job.future.set_running_or_notify_cancel():
                continue  # its caller cancelled it while it waited
            if job.deadline is not None and now_wall > job.deadline:
                job.future.set_exception(DeadlineExpired(f"deadline passed {now_wall - job.deadline:.1f}s ago"))
                continue
            try:
                groups.append(self._group(job, generator))
            except Exception as exc:  # noqa: BLE001  # its caller gets it (a prompt that fits no slot, ...)
                job.future.set_exception(exc)
        if not groups:
            return
        if self._cache is not None and self._cache.backend is not generator.backend and self._rows:
            # A new model version: the running sequences finish on the old one first.
            with self._cond:
                self._retries.extendleft(reversed(groups))
            return
        self._prefill(self._slots_for(generator), sorted(groups, key=lambda g: len(g.prompt)))
        log.debug("admitted", extra={"jobs": len(groups), "rows": len(self._rows)})

    def _prefill(self, cache: CacheSlots, groups: list[_Group]) -> None:
        """Prompts of close lengths in one run, one row per job; a job's other candidates get
        copies of its prompt's cache rows and sample their first token from the same logits."""
        started = self._clock()
        for begin, end in prefill_groups(np.array([len(g.prompt) for g in groups])):
            batch, first = groups[begin:end], len(self._rows)
            try:
                logits = cache.prefill(first, [g.prompt for g in batch])  # one row per job
                self.prefilled_rows += len(batch)
            except Exception as exc:  # noqa: BLE001  # fails these jobs, not the running ones
                for group in batch:
                    group.job.future.set_exception(exc)
                for row in range(first, min(first + len(batch), cache.slots)):
                    cache.free(row)  # whatever the failed run wrote there
                continue
            rows, row_logits = [], []
            for offset, group in enumerate(batch):
                self._rows.append(self._sequence(group, 0))
                rows.append(first + offset)
                row_logits.append(logits[offset])
            for offset, group in enumerate(batch):
                for index in range(1, group.n):  # the other candidates: the prompt's cache rows copied
                    cache.copy(first + offset, len(self._rows))
                    rows.append(len(self._rows))
                    row_logits.append(logits[offset])
                    self._rows.append(self._sequence(group, index))
            for group in batch:
                group.job.started, group.job.batch_size = started, len(self._rows)
            self._sample(rows, np.stack(row_logits))

    def _group(self, job: Job, generator: Generator, attempt: int = 0, spent: int = 0) -> _Group:
        params = job.params
        prompt = generator.prompt_ids(generator.fit_dialog(job.dialog, params.max_new_tokens), params.length)
        if not prompt:
            raise ValueError("every prompt needs at least one token")
        tokens = self.slot_tokens or generator.max_context_tokens + MAX_NEW_TOKENS
        tokens = min(tokens, getattr(generator.backend, "max_positions", tokens))
        steps = min(params.max_new_tokens, tokens - len(prompt))
        if steps < 1:
            raise ValueError(f"a prompt of {len(prompt)} tokens leaves no room in a slot of {tokens}")
        n = candidates_of(job, self.slots)
        return _Group(job, generator, prompt, steps, n, attempt, spent, texts=[None] * n)

    def _sequence(self, group: _Group, index: int) -> _Sequence:
        seed = group.job.params.seed
        if seed is not None:  # candidate 0 draws as a job of one candidate does: the same seeded reply
            entropy: int | list[int] = seed + group.attempt if index == 0 else [seed + group.attempt, index]
            rng = np.random.default_rng(entropy)
        else:
            rng = np.random.default_rng(np.random.SeedSequence())
        generator = group.generator
        return _Sequence(
            group=group,
            index=index,
            rng=rng,
            seen=np.unique(np.asarray(group.prompt, dtype=np.int64)),
            banned=np.asarray(generator.codec.banned_ids, dtype=np.int64),
            eos_id=generator.codec.eos_id,
        )

    def _step(self) -> None:
        tokens = np.fromiter((seq.next_token for seq in self._rows), dtype=np.int64, count=len(self._rows))
        self.batch_sizes.append(len(self._rows))
        self.steps += 1
        assert self._cache is not None  # rows exist only in an opened pool
        logits = self._cache.step(tokens)
        self._sample(list(range(len(self._rows))), logits)

    def _sample(self, rows: list[int], logits: np.ndarray) -> None:
        """Each row's next token from its logits; retire the rows that ended."""
        ended = []
        for row, row_logits in zip(rows, logits, strict=True):
            seq = self._rows[row]
            params = seq.job.params
            scores = np.array(row_logits, dtype=np.float32)
            ban(scores, seq.banned)
            penalise(scores, seq.seen, params.repetition_penalty)
            token = draw(scores, params, seq.rng)
            if token == seq.eos_id:
                ended.append(row)
                continue
            seq.new.append(token)
            seq.next_token = token
            if params.repetition_penalty != 1.0 and token not in seq.seen:
                seq.seen = np.union1d(seq.seen, [token])
            if len(seq.new) >= seq.steps:
                ended.append(row)
        for row in ended:
            self._finish(self._rows[row])
        self._retire(ended)

    def _finish(self, seq: _Sequence) -> None:
        group = seq.group
        if seq.job.future.done():
            return  # failed meanwhile (a deadline)
        group.spent += len(seq.new)
        group.texts[seq.index] = group.generator.backend.continuation(seq.new).text  # cut at eos or the next speaker
        if any(text is None for text in group.texts):
            return  # the other candidates are still running
        texts = [text or "" for text in group.texts]
        if any(texts):
            first = next(text for text in texts if text)
            seq.job.future.set_result(Reply(first, group.spent, candidates=texts))
            return
        if group.attempt + 1 < group.generator.attempts:
            log.info("empty generation, sampling again", extra={"attempt": group.attempt + 1})
            with self._cond:
                self._retries.append(self._group(group.job, group.generator, group.attempt + 1, group.spent))
            return
        seq.job.future.set_exception(EmptyGeneration(f"the model gave an empty reply {group.generator.attempts} times"))

    def _retire(self, rows: list[int]) -> None:
        """Free `rows`: the last rows move into the gaps, so rows in use stay [0, n)."""
        if not rows:
            return
        cache = self._cache
        assert cache is not None  # rows exist only in an opened pool
        for row in sorted(set(rows), reverse=True):
            last = len(self._rows) - 1
            if row != last:
                cache.move(last, row)  # the freed row's pages go back with it
                self._rows[row] = self._rows[last]
            else:
                cache.free(row)
            self._rows.pop()

    def _fail_rows(self, exc: Exception) -> None:
        for seq in self._rows:
            if not seq.job.future.done():
                seq.job.future.set_exception(exc)
        if self._cache is not None:
            for row in range(len(self._rows)):
                self._cache.free(row)
        self._rows.clear()

    def _fail_all(self, exc: Exception) -> None:
        self._fail_rows(exc)
        for group in self._retries:
            group.job.future.set_exception(exc)
        for queue in self._queues.values():
            for job in queue:
                job.future.set_exception(exc)
            queue.clear()
