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

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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


def token_limit(config, tokenizer, max_tokens: int) -> int:
    """`max_tokens`, never longer than the model can take (tokenizers often say "no limit" with a
    huge number)."""
    limits = [max_tokens, getattr(config, "max_position_embeddings", None) or max_tokens]
    if tokenizer.model_max_length and tokenizer.model_max_length < 1_000_000:
        limits.append(tokenizer.model_max_length)
    return min(limits)


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
        self.max_tokens = token_limit(self.model.config, self.tokenizer, max_tokens)
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
        return toxicity_of(logits.numpy(), self.toxic)


def toxicity_of(logits, toxic: ToxicClass) -> list[float]:
    """The toxic class's probability from a batch of logits [texts, classes] (numpy)."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    if toxic.sigmoid:
        probs = 1 / (1 + np.exp(-logits))
    else:
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs = exp / exp.sum(axis=-1, keepdims=True)
    scores = probs[:, toxic.index]
    if toxic.invert:
        unsafe = probs[:, toxic.unsafe] if toxic.unsafe is not None else 0.0
        scores = 1 - scores * (1 - unsafe)
    return [float(x) for x in scores]


CONVERTED_FORMAT = 1  # the layout convert_classifier writes; another one is converted again


class OnnxToxicityScorer:
    """The same classifier on ONNX Runtime, for the inference worker: no torch in the process.

    Loading a torch classifier costs a worker about 0.36 GB, nearly all of it torch and
    transformers themselves (measured for a 12M-parameter model: docs/inference.md); the worker
    already runs ONNX Runtime. The checkpoint is exported once, in a child process that has torch
    (`python -m shared.toxicity convert`), into `cache_dir` with its tokenizer as tokenizer.json
    (read here by the `tokenizers` library alone), int8 by ONNX Runtime's dynamic quantization
    when asked; later loads reuse it while the source is unchanged.
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        cache_dir: Path,
        label: str | None = None,
        max_tokens: int = 256,
        threads: int = 1,
        quantization: Literal["int8", "float32"] = "int8",
    ):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name = model_name_or_path
        self.quantization = quantization
        folder = converted_classifier(model_name_or_path, Path(cache_dir), quantization)
        meta = json.loads((folder / "meta.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        self.max_tokens = min(max_tokens, int(meta["max_tokens"]))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.enable_padding(pad_id=int(meta["pad_id"]), pad_token=meta["pad_token"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.toxic = toxic_class(config["id2label"], config.get("problem_type"), label)
        log.info(
            "toxicity model loaded",
            extra={
                "model": self.name,
                "class": self.toxic.index,
                "engine": "onnxruntime",
                "quantization": quantization,
            },
        )

    def score(self, texts: Sequence[str]) -> list[float]:
        """Toxicity of each text, in [0, 1]."""
        import numpy as np

        encodings = self.tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        (logits,) = self.session.run(["logits"], {name: feeds[name] for name in self.inputs})
        return toxicity_of(logits, self.toxic)


_HUB_FILES = ["config.json", "tokenizer*", "vocab*", "special_tokens_map.json", "*.model", "merges.txt"]


def local_classifier(model_name_or_path: str) -> Path:
    """A folder as it is; a hub name downloaded here (huggingface_hub: HF_ENDPOINT, its cache and
    HF_HUB_OFFLINE apply) with one weights file, safetensors when the repository has it, so that a
    missing model fails at once, before any child process starts."""
    if Path(model_name_or_path).is_dir():
        return Path(model_name_or_path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    folder = Path(snapshot_download(model_name_or_path, allow_patterns=[*_HUB_FILES, "model.safetensors"]))
    if not (folder / "model.safetensors").exists():
        from huggingface_hub import hf_hub_download

        try:
            hf_hub_download(model_name_or_path, "pytorch_model.bin")
        except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
            raise RuntimeError(f"{model_name_or_path} has no weights (model.safetensors or pytorch_model.bin)") from exc
    return folder


def _fingerprint(folder: Path) -> str:
    """A folder by its files' names, sizes and times (a retrained model, or a new hub revision, converts again)."""
    stats = sorted((f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in folder.iterdir() if f.is_file())
    return hashlib.sha256(repr((str(folder.resolve()), stats)).encode()).hexdigest()[:16]


def converted_classifier(model_name_or_path: str, cache_dir: Path, quantization: str) -> Path:
    """The ONNX export of a classifier under `cache_dir`, made now (in a child process) if missing."""
    try:
        source = local_classifier(model_name_or_path)
    except Exception as exc:  # hub errors are many classes: the caller gets one, with the cause
        raise RuntimeError(f"converting {model_name_or_path} to ONNX failed: {type(exc).__name__}: {exc}") from exc
    fingerprint = _fingerprint(source)
    key = hashlib.sha256(f"{fingerprint}|{quantization}".encode()).hexdigest()[:16]
    out = Path(cache_dir) / "classifiers" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', model_name_or_path)[-60:]}-{key}"
    meta = out / "meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("format") == CONVERTED_FORMAT:
        return out
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    log.info("converting the toxicity classifier", extra={"model": model_name_or_path, "quantization": quantization})
    done = subprocess.run(
        [sys.executable, "-m", "shared.toxicity", "convert", str(source), str(tmp), quantization],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"converting {model_name_or_path} to ONNX failed: {done.stderr.strip()[-600:]}")
    try:
        os.replace(tmp, out)  # atomic; another process that converted first wins
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def convert_classifier(model_name_or_path: str, out: Path, quantization: str) -> None:
    """Export the classifier to `out` (model.onnx, config.json, tokenizer.json, meta.json); needs torch."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{model_name_or_path} has no fast tokenizer (tokenizer.json) to run without transformers")
    model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path).eval()
    sample = tokenizer(["пример текста", "ещё один пример"], padding=True, return_tensors="pt")
    graph = out / ("model.float32.onnx" if quantization == "int8" else "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample["input_ids"], sample["attention_mask"]),
            str(graph),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={name: {0: "texts", 1: "tokens"} for name in ("input_ids", "attention_mask")}
            | {"logits": {0: "texts"}},
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, and BERT exports as is
        )
    if quantization == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(graph), str(out / "model.onnx"), weight_type=QuantType.QInt8)
        graph.unlink()
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    model.config.to_json_file(str(out / "config.json"))
    meta = {
        "format": CONVERTED_FORMAT,
        "source": model_name_or_path,
        "quantization": quantization,
        "max_tokens": token_limit(
            model.config, tokenizer, getattr(model.config, "max_position_embeddings", None) or 512
        ),
        "pad_id": tokenizer.pad_token_id or 0,
        "pad_token": tokenizer.pad_token or "[PAD]",
    }
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))


if __name__ == "__main__":  # python -m shared.toxicity convert SOURCE OUT int8|float32
    if len(sys.argv) != 5 or sys.argv[1] != "convert":
        raise SystemExit("usage: python -m shared.toxicity convert SOURCE OUT int8|float32")
    convert_classifier(sys.argv[2], Path(sys.argv[3]), sys.argv[4])
