"""Toxicity of texts from a sequence classifier: the scraper scores dialogs with it
(services/scraper/toxicity.py), the inference worker's reranker scores reply candidates.

Any `AutoModelForSequenceClassification` works (hub name or folder; the scraper's default is the
seed's `sismetanin/rubert-toxic-pikabu-2ch`, the reranker's `cointegrated/rubert-tiny-toxicity`).
The score is the probability of the toxic class: the label named by `label`, else a label called
toxic/toxicity, else one minus the probability of a label called non-toxic/neutral/normal, else
class 1 of a two-class model. A multi-label model that names a clean class and a `dangerous` one
(rubert-tiny-toxicity: non-toxic, insult, obscenity, threat, dangerous) scores as its card says:
1 - p(non-toxic) * (1 - p(dangerous)), toxic or inappropriate. With `quantization="int8"`
the classifier's linear layers run as torch's dynamic int8 matmuls (as the generator's weights are
int8 in the worker): for a BERT-base that is most of its time on CPU.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

_TOXIC_NAMES = {"toxic", "toxicity", "toxic_comment", "offensive", "abusive", "hate"}
_CLEAN_NAMES = {"non-toxic", "non_toxic", "nontoxic", "not_toxic", "not-toxic", "neutral", "normal", "clean", "ok"}
_UNSAFE_NAMES = {"dangerous", "inappropriate", "unsafe"}  # harm beyond toxicity, scored beside a clean class
# Aspects that multi-label toxicity models score each on its own (Jigsaw's, rubert-tiny-toxicity's)
_ASPECT_NAMES = {"insult", "obscenity", "obscene", "threat", "severe_toxic", "identity_hate"} | _UNSAFE_NAMES


@dataclass(frozen=True)
class ToxicClass:
    index: int
    invert: bool  # score = 1 - p(index): the model names the clean class, not the toxic one
    sigmoid: bool  # multi-label models score each class on its own
    unsafe: int | None = None  # with invert: score = 1 - p(clean) * (1 - p(unsafe))


def toxic_class(id2label: dict, problem_type: str | None, label: str | None = None) -> ToxicClass:
    """Which output of a classifier is the toxic class (see the module docstring)."""
    names = {int(i): str(name).strip().lower() for i, name in id2label.items()}
    clean = [index for index, name in sorted(names.items()) if name in _CLEAN_NAMES]
    # A clean class beside aspects (insult, threat, ...) is a multi-label model even when its config
    # predates `problem_type` (rubert-tiny-toxicity's first one): a softmax would not be what it learned.
    aspects = problem_type is None and bool(clean) and any(name in _ASPECT_NAMES for name in names.values())
    sigmoid = problem_type == "multi_label_classification" or len(names) == 1 or aspects
    if label is not None:
        wanted = label.strip().lower()
        if re.fullmatch(r"[0-9]+", wanted) and int(wanted) in names:
            return ToxicClass(int(wanted), False, sigmoid)
        for index, name in names.items():
            if name == wanted:
                return ToxicClass(index, False, sigmoid)
        raise ValueError(f"TOXICITY_LABEL={label!r} is not a class of the model: {sorted(names.values())}")
    for index, name in sorted(names.items()):
        if name in _TOXIC_NAMES:
            return ToxicClass(index, False, sigmoid)
    if clean:
        unsafe = [index for index, name in sorted(names.items()) if name in _UNSAFE_NAMES]
        return ToxicClass(clean[0], True, sigmoid, unsafe[0] if unsafe and sigmoid else None)
    if len(names) == 1:
        return ToxicClass(0, False, True)
    if len(names) == 2:
        return ToxicClass(1, False, sigmoid)  # LABEL_0 / LABEL_1: 1 is the positive class by convention
    raise ValueError(f"cannot tell which class is toxic among {sorted(names.values())}: set TOXICITY_LABEL")


class ToxicityScorer:
    """A sequence classifier that maps texts to the probability of the toxic class."""

    def __init__(
        self,
        model_name_or_path: str,
        *,
        label: str | None = None,
        max_tokens: int = 256,
        torch_threads: int = 0,
        quantization: Literal["int8", "float32"] = "float32",
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.name = model_name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path)
        self.model.eval()
        self.quantization = quantization
        if quantization == "int8":
            with warnings.catch_warnings():  # torch marks its quantized tensors deprecated; they still run
                warnings.simplefilter("ignore")
                self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        # Never longer than the model can take (tokenizers often say "no limit" with a huge number).
        limits = [max_tokens, getattr(self.model.config, "max_position_embeddings", None) or max_tokens]
        if self.tokenizer.model_max_length and self.tokenizer.model_max_length < 1_000_000:
            limits.append(self.tokenizer.model_max_length)
        self.max_tokens = min(limits)
        self.toxic = toxic_class(self.model.config.id2label, self.model.config.problem_type, label)
        log.info(
            "toxicity model loaded",
            extra={
                "model": self.name,
                "class": self.toxic.index,
                "label": self.model.config.id2label.get(self.toxic.index),
                "quantization": quantization,
            },
        )

    def score(self, texts: Sequence[str]) -> list[float]:
        """Toxicity of each text, in [0, 1]."""
        import torch

        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logits = self.model(**batch).logits.float()
        probs = torch.sigmoid(logits) if self.toxic.sigmoid else torch.softmax(logits, dim=-1)
        scores = probs[:, self.toxic.index]
        if self.toxic.invert:
            unsafe = probs[:, self.toxic.unsafe] if self.toxic.unsafe is not None else 0.0
            scores = 1 - scores * (1 - unsafe)
        return scores.tolist()
