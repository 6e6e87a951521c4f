"""Choosing the reply among a job's candidates, every score explained in the result.

Each candidate gets (shared/schemas.py `CandidateScores`):
- `toxicity`: the probability of the toxic class from a sequence classifier (shared/toxicity.py;
  None when the worker has none);
- `echo`: the share of its word bigrams (words, for a reply of one word) found in one turn of the
  dialog, the highest over the turns: 1 is a copy of a message;
- `distinct2`: distinct word bigrams over bigrams (1: nothing repeated inside it; a loop of one
  word is near 0);
- `recent`: the same overlap against each of the chat's recent replies (the bot sends them): 1
  is a repeat of what the bot said lately;
- `stock`: the same overlap against the job's other candidates, the highest: 1 when the model
  said it more than once for this message, which is how its stock phrases show (a small dialog
  model's modes: "это база, анон" to anything); choosing those is how one reply spreads over every
  chat (measured: docs/inference.md);
- `length_fit`: 1 when its length falls in the asked bucket, 0.5 one bucket off, 0 further;
- `garbage`: too little text (no letter at all: 1; one letter: 0.5), letters but no Cyrillic
  (0.5), unbalanced quotes or brackets (0.25), summed and capped at 1.

Hard rules reject a candidate (`rejected`): `empty`, `echo` (echo >= ECHO_REJECT), `repeat`
(recent >= REPEAT_REJECT), `loop` (distinct2 < LOOP_REJECT over at least LOOP_MIN_BIGRAMS bigrams),
`garbage` (garbage >= GARBAGE_REJECT). A rejected candidate is never chosen while another passed;
when all failed, the best of the non-empty ones is taken (rule `all_rejected`).

The soft scores make `quality` (1 minus weighted faults; `stock` weighs half). Among the passing candidates, those
within QUALITY_MARGIN of the best are "acceptable", and the chat's tone picks among them by
toxicity: `soft` the least toxic, `normal` the middle one, `sharp` the most toxic at or under
SHARP_CEILING. The ceiling is a constant of the code, not a setting: no configuration makes the
bot choose a reply the classifier finds more toxic than that while a cleaner acceptable one exists
(and for every tone, a candidate above it is taken only when every acceptable one is: rule
`ceiling`). Without a classifier the best quality wins (rule `quality`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.prompt import length_bucket
from shared.schemas import CandidateScores, Choice, Tone

ECHO_REJECT = 0.8
REPEAT_REJECT = 0.8
LOOP_REJECT = 0.5
LOOP_MIN_BIGRAMS = 4
GARBAGE_REJECT = 0.75
QUALITY_MARGIN = 0.3
# The sharpest reply the bot may choose; a constant on purpose (docs/inference.md, "Reranker").
SHARP_CEILING = 0.9

WEIGHTS = {"echo": 1.0, "repetition": 1.0, "recent": 1.0, "length": 0.5, "garbage": 1.0, "stock": 0.5}
BUCKETS = ("1", "2", "3", "-")
REJECTION_REASONS = ("empty", "echo", "repeat", "loop", "garbage")

_WORD = re.compile(r"\w+")
_LETTER = re.compile(r"[^\W\d_]")
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
_PAIRS = (("(", ")"), ("[", "]"), ("«", "»"), ("{", "}"))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("ё", "е"))


def ngrams(tokens: list[str]) -> list[tuple[str, ...]]:
    """Word bigrams, or the words themselves for a text of one word."""
    if len(tokens) < 2:
        return [(t,) for t in tokens]
    return [tuple(tokens[i : i + 2]) for i in range(len(tokens) - 1)]


def overlap(candidate: str, other: str) -> float:
    """The share of `candidate`'s n-grams found in `other` (0..1)."""
    mine = set(ngrams(words(candidate)))
    if not mine:
        return 0.0
    theirs = set(ngrams(words(other)))
    if len(words(other)) >= 2 and all(len(g) == 1 for g in mine):
        theirs |= {(w,) for w in words(other)}  # one word against a longer text: its words
    return len(mine & theirs) / len(mine)


def distinct2(text: str) -> float:
    grams = ngrams(words(text))
    if len(grams) < 2 or len(grams[0]) == 1:
        return 1.0
    return len(set(grams)) / len(grams)


def garbage(text: str) -> float:
    letters = _LETTER.findall(text)
    score = 0.0
    if len(letters) == 0:
        score += 1.0
    elif len(letters) == 1:
        score += 0.5
    if letters and not _CYRILLIC.search(text):
        score += 0.5
    quotes_unbalanced = text.count('"') % 2 == 1
    brackets_unbalanced = any(text.count(a) != text.count(b) for a, b in _PAIRS)
    if quotes_unbalanced or brackets_unbalanced:
        score += 0.25
    return min(1.0, score)


def length_fit(text: str, asked: str, count_tokens: Callable[[str], int]) -> float:
    got = length_bucket(count_tokens(text))
    off = abs(BUCKETS.index(got) - BUCKETS.index(asked)) if asked in BUCKETS else 0
    return max(0.0, 1.0 - 0.5 * off)


@dataclass
class Reranker:
    """Scores candidates and chooses one (the module docstring has the rules)."""

    count_tokens: Callable[[str], int]
    toxicity: Callable[[list[str]], list[float]] | None = None  # texts -> probability of the toxic class

    def score(
        self, candidates: Sequence[str], dialog: Sequence[str], recent: Sequence[str], length: str
    ) -> list[CandidateScores]:
        texts = list(candidates)
        tox: list[float | None] = [None] * len(texts)
        if self.toxicity is not None and len(texts) > 1:
            nonempty = [i for i, t in enumerate(texts) if t.strip()]
            if nonempty:
                for i, value in zip(nonempty, self.toxicity([texts[i] for i in nonempty]), strict=True):
                    tox[i] = round(float(value), 4)
        turns = [t for t in dialog if t.strip()]
        scored = []
        for index, (text, toxicity) in enumerate(zip(texts, tox, strict=True)):
            echo = max((overlap(text, turn) for turn in turns), default=0.0)
            rec = max((overlap(text, r) for r in recent if r.strip()), default=0.0)
            others = (other for i, other in enumerate(texts) if i != index and other.strip())
            stock = max((overlap(text, other) for other in others), default=0.0)
            d2 = distinct2(text)
            fit = length_fit(text, length, self.count_tokens) if text.strip() else 0.0
            junk = garbage(text)
            faults = (
                WEIGHTS["echo"] * echo
                + WEIGHTS["repetition"] * (1 - d2)
                + WEIGHTS["recent"] * rec
                + WEIGHTS["length"] * (1 - fit)
                + WEIGHTS["garbage"] * junk
                + WEIGHTS["stock"] * stock
            )
            rejected = []
            if not text.strip():
                rejected.append("empty")
            else:
                if echo >= ECHO_REJECT:
                    rejected.append("echo")
                if rec >= REPEAT_REJECT:
                    rejected.append("repeat")
                if d2 < LOOP_REJECT and len(ngrams(words(text))) >= LOOP_MIN_BIGRAMS:
                    rejected.append("loop")
                if junk >= GARBAGE_REJECT:
                    rejected.append("garbage")
            scored.append(
                CandidateScores(
                    text=text,
                    toxicity=toxicity,
                    echo=round(echo, 4),
                    distinct2=round(d2, 4),
                    recent=round(rec, 4),
                    stock=round(stock, 4),
                    length_fit=round(fit, 4),
                    garbage=round(junk, 4),
                    quality=round(1.0 - faults, 4),
                    rejected=rejected,
                )
            )
        return scored

    def choose(
        self, candidates: Sequence[str], dialog: Sequence[str], recent: Sequence[str], length: str, tone: Tone
    ) -> Choice:
        scored = self.score(candidates, dialog, recent, length)
        index, rule = pick(scored, tone)
        return Choice(index=index, tone=tone, rule=rule, candidates=scored)


def pick(scored: list[CandidateScores], tone: Tone) -> tuple[int, str]:
    """The chosen index and the rule that decided it."""
    if len(scored) == 1:
        return 0, "single"
    passing = [i for i, c in enumerate(scored) if not c.rejected]
    if not passing:
        pool = [i for i, c in enumerate(scored) if "empty" not in c.rejected] or list(range(len(scored)))
        return max(pool, key=lambda i: scored[i].quality), "all_rejected"
    best = max(scored[i].quality for i in passing)
    acceptable = [i for i in passing if scored[i].quality >= best - QUALITY_MARGIN]
    if len(acceptable) == 1:
        return acceptable[0], "only_acceptable"
    if any(scored[i].toxicity is None for i in acceptable):
        return max(acceptable, key=lambda i: scored[i].quality), "quality"
    return by_tone(scored, acceptable, tone)


def by_tone(scored: list[CandidateScores], acceptable: list[int], tone: Tone) -> tuple[int, str]:
    """Among acceptable candidates with toxicity scores: where the tone points, under the ceiling."""
    under = [i for i in acceptable if (scored[i].toxicity or 0.0) <= SHARP_CEILING]
    if not under:
        return min(acceptable, key=lambda i: scored[i].toxicity or 0.0), "ceiling"
    by_toxicity = sorted(under, key=lambda i: (scored[i].toxicity or 0.0, -scored[i].quality))
    if tone == "soft":
        return by_toxicity[0], "tone_soft"
    if tone == "sharp":
        return by_toxicity[-1], "tone_sharp"
    return by_toxicity[(len(by_toxicity) - 1) // 2], "tone_normal"
