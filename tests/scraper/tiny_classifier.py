"""A tiny toxicity classifier made at test time with the real transformers and tokenizers classes:
a one-layer BERT for sequence classification (random weights) and a word-level tokenizer.

The tokenizer is built as a `tokenizers` object and wrapped with `tokenizer_object=` (building a
fast tokenizer from vocab file paths can silently give an empty vocabulary in transformers 5).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def word_level_tokenizer(words: Iterable[str], max_length: int):
    """A BERT-style word-level fast tokenizer ([CLS] text [SEP], lower-cased) over `words`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIALS, *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=max_length,
    )
    assert len(fast) == len(vocab)
    return fast


def make_tiny_classifier(
    out_dir: Path,
    corpus: Iterable[str],
    *,
    labels: tuple[str, ...] = ("neutral", "toxic"),
    vocab_size: int = 2000,
    seed: int = 0,
) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    counts = Counter(w for text in corpus for w in re.findall(r"\w+|[^\w\s]", text.lower()))
    fast = word_level_tokenizer([w for w, _ in counts.most_common(vocab_size - len(SPECIALS))], 128)
    vocab = fast.get_vocab()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = BertForSequenceClassification(config)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir
