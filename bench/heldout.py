"""Replies to a held-out set before and after the reranker, with the demo model.

    python -m bench.heldout [--count 200] [--candidates 4] [--seed 18]

The set: bench/heldout_dialogs.py (200 Russian dialogs written for it, in chats of ten; not the
training corpus). The model: the bundled demo model (built once into var/bench/demo-model), served
as the worker serves it (onnxruntime int8, the continuous DecodingLoop), with its own sampling
defaults (version.json) and each dialog's asked length bucket.

Each job samples N candidates at once. "before" sends what a job of one candidate sends: its
first candidate (candidate 0 draws as a lone job would); "after" sends the reranker's choice
(tone normal, no classifier: none of the measures below is about toxicity). Each way keeps its own
chat history (the last five replies it sent in that chat), as the bot does, and is measured on:
- echo rate: replies whose n-grams are >= 80% found in one turn of their dialog (reranker.overlap),
  and the mean of that overlap;
- repeat rate: replies >= 80% found in one of the way's last five replies in the same chat;
- distinct-2: distinct word bigrams over all bigrams of all replies, over those of each chat
  (the mean over chats: what a chat's members read) and within each reply (the mean);
- in bucket: replies whose token count falls in the asked length bucket (shared/prompt.py);
- leak rate: replies with a special token's text or a speaker marker (must stay 0).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.inference import DEFAULT_CACHE  # noqa: E402

MARKER = re.compile(r"\|[01]\|[123-]\|")
RECENT = 5


def measure(replies: list[tuple[int, list[str], str, str]], codec) -> dict:
    """(chat, dialog, asked length, reply) of one way -> its rates."""
    from services.inference_worker.reranker import ECHO_REJECT, REPEAT_REJECT, distinct2, ngrams, overlap, words
    from shared.prompt import length_bucket

    history: dict[int, list[str]] = {}
    echo = repeat = in_bucket = leak = 0
    echo_scores = []
    bigrams: list[tuple[str, ...]] = []
    per_chat: dict[int, list[tuple[str, ...]]] = {}
    per_reply = []
    for chat, dialog, length, text in replies:
        recent = history.setdefault(chat, [])
        echo_scores.append(max((overlap(text, t) for t in dialog), default=0.0))
        echo += echo_scores[-1] >= ECHO_REJECT
        repeat += max((overlap(text, r) for r in recent), default=0.0) >= REPEAT_REJECT
        in_bucket += length_bucket(codec.count_tokens(text)) == length
        leak += bool(MARKER.search(text)) or any(s and s in text for s in codec.special_texts)
        grams = [g for g in ngrams(words(text)) if len(g) == 2]
        bigrams += grams
        per_chat.setdefault(chat, []).extend(grams)
        per_reply.append(distinct2(text))
        recent.insert(0, text)
        del recent[RECENT:]
    n = len(replies)
    return {
        "echo_rate": echo / n,
        "echo_mean": statistics.mean(echo_scores),
        "repeat_rate": repeat / n,
        "distinct2": len(set(bigrams)) / max(1, len(bigrams)),
        "distinct2_chat": statistics.mean(len(set(g)) / max(1, len(g)) for g in per_chat.values()),
        "distinct2_mean": statistics.mean(per_reply),
        "in_bucket": in_bucket / n,
        "leak_rate": leak / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        default=None,
        help="Instead of the demo model's own (1.2): 1.0 lets it copy.",
    )
    args = parser.parse_args()

    from bench.heldout_dialogs import heldout
    from services.inference_worker.backends import load_backend
    from services.inference_worker.demo_model.build import ensure_demo_model
    from services.inference_worker.generation import Generator
    from services.inference_worker.reranker import Reranker
    from services.inference_worker.runtime import backend_options, make_scheduler
    from shared.schemas import GenerationParams
    from shared.settings import WorkerSettings

    model = ensure_demo_model(args.cache_dir / "demo-model")
    defaults = json.loads((model / "version.json").read_text()).get("generation_defaults", {})
    if args.repetition_penalty is not None:
        defaults["repetition_penalty"] = args.repetition_penalty
    settings = WorkerSettings(redis_url="redis://unused", inference_backend="onnxruntime")
    backend = load_backend("onnxruntime", model, backend_options(settings))
    generator = Generator(backend)
    loop = make_scheduler(generator, backend, settings)
    reranker = Reranker(generator.codec.count_tokens, None)
    items = heldout(args.count, args.seed)
    futures = [
        loop.submit(
            item.dialog,
            GenerationParams.model_validate({**defaults, "length": item.length, "candidates": args.candidates}),
        )
        for item in items
    ]
    candidates = [f.result(600).candidates for f in futures]
    loop.stop()

    before: list[tuple[int, list[str], str, str]] = []
    after: list[tuple[int, list[str], str, str]] = []
    rules: dict[str, int] = {}
    history: dict[int, list[str]] = {}
    for item, cands in zip(items, candidates, strict=True):
        before.append((item.chat, item.dialog, item.length, cands[0]))
        recent = history.setdefault(item.chat, [])
        choice = reranker.choose(cands, item.dialog, recent, item.length, "normal")
        rules[choice.rule] = rules.get(choice.rule, 0) + 1
        text = cands[choice.index]
        after.append((item.chat, item.dialog, item.length, text))
        recent.insert(0, text)
        del recent[RECENT:]
    result = {"before": measure(before, generator.codec), "after": measure(after, generator.codec), "rules": rules}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print()
    print(f"| measure | before (1 candidate) | after (reranker of {args.candidates}) | better |")
    print("|---|---|---|---|")
    for key, higher in (
        ("echo_rate", False),
        ("echo_mean", False),
        ("repeat_rate", False),
        ("distinct2", True),
        ("distinct2_chat", True),
        ("distinct2_mean", True),
        ("in_bucket", True),
        ("leak_rate", False),
    ):
        b, a = round(result["before"][key], 3), round(result["after"][key], 3)  # as printed
        better = (a > b) if higher else (a < b)
        print(f"| {key} | {b:.3f} | {a:.3f} | {'yes' if better else ('same' if a == b else 'NO')} |")


if __name__ == "__main__":
    main()
