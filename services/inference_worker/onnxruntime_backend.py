"""The default fast backend: ONNX Runtime with int8 weights (float32 for parity checks).

The checkpoint is turned into a decoder graph (onnx_graph.py) on first use and cached beside it
(conversion.py). One `InferenceSession` holds one copy of the weights; its runs are thread-safe,
so the worker's lanes call it at once, each with its own key/value cache, and every run may use
all the process's cores: on 2 cores one 355M reply took 0.52-0.66 s, CTranslate2 1.81 s on the
same machine (its int8 kernels stream the weights from one core; docs/inference.md).

Decoding: prompts of close lengths are prefilled together (right-padded, `_prefill`), each group
writing its rows of the batch's cache, then one run per new token for the whole batch; a cache
buffer per layer is sized for the longest prompt plus `max_new_tokens` and written in place by the
graph. Sampling is done here, in numpy, with transformers' semantics (sampling.py), one random
generator per sequence. Tokenization uses the `tokenizers` library alone.
"""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np

from services.inference_worker.backends import BackendOptions, Continuation, ConvertedBackend
from services.inference_worker.sampling import ban, draw, penalise
from shared.schemas import GenerationParams

# The graph's cache input type -> its numpy buffers (onnx_graph.py)
CACHE_DTYPES = {"tensor(int8)": np.int8, "tensor(float16)": np.float16, "tensor(float)": np.float32}
DEFAULT_LANES = 2  # one lane can run a bulk batch while the other takes an interactive job


def lanes_for(options: BackendOptions) -> int:
    """INFERENCE_LANES, else DEFAULT_LANES (the worker's start-up needs it before the model loads,
    to size its pool)."""
    return options.lanes or DEFAULT_LANES


class OnnxRuntimeBackend(ConvertedBackend):
    name = "onnxruntime"
    engine = "onnxruntime"

    def __init__(self, model_dir: Path, options: BackendOptions | None = None):
        super().__init__(model_dir, options)
        import onnxruntime as ort

        self.lanes = lanes_for(self.options)
        # Every run may use every core: lanes running at once share them (measured: docs/inference.md).
        self.threads_per_lane = self.options.threads_per_lane or self.options.cores
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = self.threads_per_lane
        session_options.inter_op_num_threads = 1
        if not self.options.spin_wait:  # on cores shared with other work, a spinning thread waits for its turn
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(self.converted_dir / "model.onnx"), session_options, providers=["CPUExecutionProvider"]
        )
        self._ort = ort
        pasts = [i for i in self.session.get_inputs() if i.name.startswith("past_key_")]
        self.layers, self.heads, self.head_size = len(pasts), pasts[0].shape[1], pasts[0].shape[3]
        self.cache_dtype = CACHE_DTYPES[pasts[0].type]  # onnx_graph.py
        config = json.loads((Path(model_dir) / "config.json").read_text())
        self.max_positions = int(config.get("n_positions") or config.get("max_position_embeddings") or 1024)
        self.loaded()

    def _binding(self, cache: list[np.ndarray]):
        """An IO binding whose key/value inputs and outputs are the same `cache` buffers, which the
        graph writes in place (nothing is copied between steps)."""
        binding = self.session.io_binding()
        binding.bind_output("logits")  # first: get_outputs()[0] is the logits
        for layer in range(self.layers):
            for k, kind in enumerate(("key", "value")):
                value = self._ort.OrtValue.ortvalue_from_numpy(cache[2 * layer + k])
                binding.bind_ortvalue_input(f"past_{kind}_{layer}", value)
                binding.bind_ortvalue_output(f"present_{kind}_{layer}", value)
        return binding

    def _run(self, binding, **feeds: np.ndarray) -> np.ndarray:
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()

    def continue_prompts(self, prompts: list[list[int]], params: GenerationParams) -> list[Continuation]:
        """One batch on one lane (the caller runs at most `lanes` of these at once)."""
        if not prompts:
            return []
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        rows = len(prompts)
        # Rows sorted by prompt length, so that prompts of similar length are neighbouring rows.
        order = sorted(range(rows), key=lambda i: len(prompts[i]))
        prompts = [prompts[i] for i in order]
        lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        width = int(lengths.max())
        steps = min(params.max_new_tokens, self.max_positions - width)
        if steps < 1:
            raise ValueError(f"a prompt of {width} tokens leaves no room in the model's {self.max_positions} positions")
        cache = [
            np.zeros((rows, self.heads, width + steps, self.head_size), dtype=self.cache_dtype)
            for _ in range(2 * self.layers)
        ]
        logits = np.concatenate(
            [
                self._prefill(
                    prompts[first:end], [c[first:end] for c in cache]
                )  # rows of a C-ordered array: contiguous
                for first, end in prefill_groups(lengths)
            ]
        )
        binding = self._binding(cache)

        seeds = [params.seed] * rows if params.seed is not None else np.random.SeedSequence().spawn(rows)
        rngs = [np.random.default_rng(seed) for seed in seeds]
        seen = [np.unique(np.asarray(p, dtype=np.int64)) for p in prompts]
        new: list[list[int]] = [[] for _ in range(rows)]
        done = np.zeros(rows, dtype=bool)
        for step in range(steps):
            tokens = np.full(rows, self.eos_token_id, dtype=np.int64)  # finished rows are fed eos
            for row in np.flatnonzero(~done):
                scores = np.array(logits[row], dtype=np.float32)
                ban(scores, self.banned)
                penalise(scores, seen[row], params.repetition_penalty)
                token = draw(scores, params, rngs[row])
                if token == self.eos_token_id:
                    done[row] = True
                    continue
                tokens[row] = token
                new[row].append(token)
                if params.repetition_penalty != 1.0 and token not in seen[row]:
                    seen[row] = np.union1d(seen[row], [token])
            if done.all() or step == steps - 1:
                break
            # One step for the whole batch: each row's new token at its own position.
            logits = self._run(
                binding,
                input_ids=tokens[:, None],
                position_ids=lengths[:, None].copy(),
                seqlens_k=lengths.astype(np.int32),
                total_sequence_length=np.array([lengths.max() + 1], dtype=np.int32),
                logits_index=np.arange(rows, dtype=np.int64),
            )
            lengths = lengths + 1
        # Back to the callers' order: the row that holds prompt j is argsort(order)[j].
        return [self.continuation(new[row]) for row in np.argsort(order)]

    def open_slots(self, slots: int, slot_tokens: int) -> CacheSlots:
        """A pool of `slots` cache rows of `slot_tokens` each, for the decoding loop (decoding_loop.py)."""
        return CacheSlots(self, slots, slot_tokens)

    def next_token_logits(self, prompt: list[int]) -> np.ndarray:
        """Raw logits of the token after `prompt` (float32, vocabulary-sized)."""
        cache = [
            np.zeros((1, self.heads, len(prompt), self.head_size), dtype=self.cache_dtype)
            for _ in range(2 * self.layers)
        ]
        return self._prefill([prompt], cache)[0]

    def _prefill(self, prompts: list[list[int]], cache: list[np.ndarray]) -> np.ndarray:
        """The prompts in one run, right-padded to the longest, into `cache` (their rows); returns
        the logits after each prompt's last token.

        The padding is run as if it were text (every row's length is the padded width): the real
        tokens never see it (attention is causal and it comes after them), and the padding rows
        get real values, where a row's true length would leave GroupQueryAttention reading scores
        it never computed for them, values that would then enter the int8 activation scales. At
        decode time each row's length is its own, so the padding in the cache is overwritten
        token by token before anything attends to it.
        """
        rows, width = len(prompts), max(len(p) for p in prompts)
        ids = np.zeros((rows, width), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt)] = prompt
        last = np.array([len(p) - 1 for p in prompts], dtype=np.int64)
        return self._run(
            self._binding(cache),
            input_ids=ids,
            position_ids=np.tile(np.arange(width, dtype=np.int64), (rows, 1)),
            seqlens_k=np.full(rows, width - 1, dtype=np.int32),
            total_sequence_length=np.array([width], dtype=np.int32),
            logits_index=np.arange(rows, dtype=np.int64) * width + last,
        )


def prefill_groups(lengths: np.ndarray, slack: float = 1.25) -> list[tuple[int, int]]:
    """Row ranges [first, end) of ascending `lengths` to prefill together: a group ends where a
    prompt is more than `slack` times its shortest, so padding wastes at most a quarter of a run,
    while prompts of equal or close lengths share one run (fewer passes over the weights)."""
    groups, first = [], 0
    for row in range(1, len(lengths)):
        if lengths[row] > slack * lengths[first]:
            groups.append((first, row))
            first = row
    groups.append((first, len(lengths)))
    return groups


def small_pages(shape: tuple[int, ...], dtype) -> tuple[np.ndarray, mmap.mmap]:
    """A zeroed array whose memory becomes resident 4 KB at a time, as it is written, and the
    mapping under it (`release` gives pages of it back).

    numpy asks for transparent huge pages on large arrays (2 MB each): a slot row of 1024 tokens
    keeps each head's keys in 256 KB, so one short prompt made 200 MB resident per row (measured);
    an anonymous mapping without huge pages costs only what is written.
    """
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffer = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape), buffer


def release(buffer: mmap.mmap, start: int, end: int) -> None:
    """Give bytes [start, end) of an anonymous mapping back to the system, whole pages only: they
    read as zeros and are resident again only once written."""
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    last = end // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        buffer.madvise(mmap.MADV_DONTNEED, first, last - first)


class CacheSlots:
    """A fixed pool of key/value cache rows for iteration-level scheduling (decoding_loop.py).

    One buffer per layer and kind, [slots, heads, slot_tokens, head_size], allocated once
    (zeroed small pages the operating system maps only when written, `small_pages`). The rows in
    use are always rows [0, active): a finished row is replaced by the last one (`move`), so each
    step runs one graph call over a contiguous block and the IO binding of each block size is made
    once and reused; the graph writes each step's keys and values in place. New sequences are
    prefilled straight into their rows. A row that is freed gives its pages back (`free`), so
    resident memory follows the tokens the rows hold now, not the longest sequence each row ever
    held (one long prompt would otherwise keep its row's pages for the worker's life).
    """

    def __init__(self, backend: OnnxRuntimeBackend, slots: int, slot_tokens: int):
        self.backend = backend
        self.slots = slots
        self.slot_tokens = min(slot_tokens, backend.max_positions)
        shape = (slots, backend.heads, self.slot_tokens, backend.head_size)
        pages = [small_pages(shape, backend.cache_dtype) for _ in range(2 * backend.layers)]
        self.cache = [array for array, _ in pages]
        self._maps = [buffer for _, buffer in pages]
        self._row_bytes = self.cache[0][0].nbytes
        self.lengths = np.zeros(slots, dtype=np.int64)  # tokens in each row's cache
        self._bindings: dict[int, object] = {}
        self._rows = np.arange(slots, dtype=np.int64)
        self._ids = np.zeros((slots, 1), dtype=np.int64)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.cache)

    def prefill(self, first: int, prompts: list[list[int]]) -> np.ndarray:
        """Prefill `prompts` into rows [first, first+len(prompts)) in one run; their next-token logits."""
        end = first + len(prompts)
        if end > self.slots:
            raise ValueError(f"rows {first}..{end} past the {self.slots} slots")
        width = max(len(p) for p in prompts)
        if width >= self.slot_tokens:
            raise ValueError(f"a prompt of {width} tokens does not fit a slot of {self.slot_tokens}")
        logits = self.backend._prefill(prompts, [c[first:end] for c in self.cache])
        self.lengths[first:end] = [len(p) for p in prompts]
        return logits

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """One token for each of rows [0, len(tokens)), each at its own position; their logits."""
        active = len(tokens)
        binding = self._bindings.get(active)
        if binding is None:
            binding = self._bindings[active] = self.backend._binding([c[:active] for c in self.cache])
        lengths = self.lengths[:active]
        self._ids[:active, 0] = tokens
        logits = self.backend._run(
            binding,
            input_ids=self._ids[:active],
            position_ids=lengths[:, None],
            seqlens_k=lengths.astype(np.int32),
            total_sequence_length=np.array([lengths.max() + 1], dtype=np.int32),
            logits_index=self._rows[:active],
        )
        lengths += 1
        return logits

    def copy(self, source: int, target: int) -> None:
        """Row `source`'s cache (the tokens it holds) into row `target` too: a job's other candidates
        start from its one prefilled prompt (decoding_loop.py)."""
        if target >= self.slots:
            raise ValueError(f"row {target} past the {self.slots} slots")
        used = int(self.lengths[source])
        for c in self.cache:
            c[target, :, :used] = c[source, :, :used]
        self.lengths[target] = used

    def move(self, source: int, target: int) -> None:
        """Row `source`'s cache (the tokens it holds) into row `target`; `source` is freed."""
        self.free(target)
        self.copy(source, target)
        self.free(source)

    def free(self, row: int) -> None:
        """Row `row` holds nothing now: its pages go back to the system."""
        start = row * self._row_bytes
        for buffer in self._maps:
            release(buffer, start, start + self._row_bytes)
        self.lengths[row] = 0

    def room(self, row: int) -> int:
        """Tokens row `row` may still take."""
        return self.slot_tokens - int(self.lengths[row])
