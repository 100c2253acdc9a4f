"""perplexity-held-out: next-token perplexity of a causal LM on held-out real prose.

Corpora: Jane Austen novels the calibration never sees (``NOVELS``; calibration uses Northanger Abbey and
pydoc topics) and the stripped gensim enwiki sample. Each is tokenized with the SmolLM2 tokenizer and cut
into non-overlapping windows of T tokens (T from ``inputs``); ``WINDOWS`` evenly spaced windows per corpus
are scored (``limit`` overrides the count). The engine takes {"input_ids": int64 [1, T]} and returns
logits [1, T, V] first. Perplexity = exp(mean NLL of the T-1 next-token predictions inside each window,
averaged over all windows of the corpus). Metric: Austen perplexity (lower is better); details hold the
enwiki perplexity and the window count.
"""

from __future__ import annotations

import numpy as np

from edgecomp.eval import Engine, TaskResult, register_task
from edgecomp.specs import TensorSpec

NOVELS = ("prideprejudice", "persuasion")  # held out: disjoint from smollm2's calibration novel
WINDOWS = 8  # per corpus in a full run


def window_nll(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per-position NLL float64 [T-1] of ``ids[1:]`` under ``logits`` [T, V] (positions 0..T-2 predict)."""
    x = np.asarray(logits, np.float64)[:-1]
    top = x.max(axis=-1, keepdims=True)
    lse = (top + np.log(np.exp(x - top).sum(axis=-1, keepdims=True)))[:, 0]
    return lse - x[np.arange(len(x)), ids[1:]]


def _pick(windows: np.ndarray, k: int) -> np.ndarray:
    """``k`` evenly spaced rows of ``windows`` [N, T] (all of them if N <= k)."""
    if len(windows) <= k:
        return windows
    return windows[np.linspace(0, len(windows) - 1, k).round().astype(int)]


def corpora(seq_len: int, k: int) -> dict[str, np.ndarray]:
    """{"austen": int64 [<=k, T], "enwiki": int64 [<=k, T]} token windows (Austen spread over ``NOVELS``)."""
    from edgecomp.zoo.data.text import austen, enwiki_text
    from edgecomp.zoo.smollm2 import token_windows

    per_novel = [token_windows(austen(n), seq_len) for n in NOVELS]
    # spread the k Austen windows over the novels in turn, each novel's share evenly spaced through it
    shares = [len(range(i, k, len(NOVELS))) for i in range(len(NOVELS))]
    austen_windows = np.concatenate([_pick(w, s) for w, s in zip(per_novel, shares, strict=True) if s])
    return {"austen": austen_windows, "enwiki": _pick(token_windows(enwiki_text(), seq_len), k)}


def _perplexity(engine: Engine, name: str, windows: np.ndarray) -> float:
    nll = [window_nll(np.asarray(engine({name: w[None]})[0])[0], w).mean() for w in windows]
    return float(np.exp(np.mean(nll)))


@register_task("perplexity-held-out")
def perplexity_held_out(engine: Engine, reference: Engine | None, inputs: tuple[TensorSpec, ...], limit: int | None):
    spec = inputs[0]
    data = corpora(spec.shape[-1], limit or WINDOWS)
    ppl = {k: _perplexity(engine, spec.name, w) for k, w in data.items()}
    details = {"enwiki_perplexity": ppl["enwiki"], "windows_per_corpus": len(data["enwiki"]),
               "austen_novels": list(NOVELS), "seq_len": spec.shape[-1]}
    ref = None
    if reference is not None:
        ref_ppl = {k: _perplexity(reference, spec.name, w) for k, w in data.items()}
        ref, details["reference_enwiki_perplexity"] = ref_ppl["austen"], ref_ppl["enwiki"]
    n = sum(len(w) for w in data.values())
    return TaskResult("perplexity-held-out", "perplexity", ppl["austen"], n, ref, higher_is_better=False,
                      details=details)
