"""similarity-lee50: how well a sentence embedder's cosine similarities track human judgements.

Primary metric: Pearson r between the cosine similarities of the 1,225 unique pairs of the 50 Lee et al.
(2005) news documents and the human similarity matrix. Details: the Lee Spearman rho, and Spearman rho on
WordSim353 and SimLex-999 (each word embedded on its own); with a reference, also how far the embeddings
moved: the cosine between the engine's and the fp32 model's embedding of every text (mean and min). The
human-judgement correlations barely resolve 4-bit damage (a W4A4 MiniLM whose worst layers are below 0 dB
SQNR scores the fp32 Pearson to four digits), so compression comparisons also need that fidelity. The engine
takes {"input_ids", "attention_mask"} int64 [1, T] (T from ``inputs``) and returns the embedding [1, D] first.

By default the word sets are cut to ``WORD_PAIRS`` evenly spaced pairs each (every pair costs two forward
passes at the full static sequence length); ``limit`` instead keeps the first ``limit`` documents and
the first ``limit`` pairs of each word set.
"""

from __future__ import annotations

import numpy as np

from edgecomp.eval import Engine, TaskResult, register_task
from edgecomp.specs import TensorSpec
from edgecomp.zoo.data import text

WORD_PAIRS = 150  # pairs per word set in a full run (of 353 / 999), evenly spaced


def _rank(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties averaged (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1, dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two 1-D arrays (nan if fewer than 2 values or one is constant)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho: Pearson r of the average-tie ranks."""
    return pearson(_rank(np.asarray(a)), _rank(np.asarray(b)))


def _embed(engine: Engine, texts: list[str], seq_len: int) -> dict[str, np.ndarray]:
    """text -> float64 [D] embedding, one engine call per distinct text."""
    from edgecomp.zoo.minilm import encode_text

    unique = list(dict.fromkeys(texts))
    feeds = encode_text(unique, seq_len)
    return {t: np.asarray(engine(f)[0], np.float64).reshape(-1) for t, f in zip(unique, feeds, strict=True)}


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _data(limit: int | None):
    docs, human = text.lee50()
    word_sets = {"wordsim353": text.wordsim353(), "simlex999": text.simlex999()}
    if limit:
        docs, human = docs[:limit], human[:limit, :limit]
        word_sets = {k: v[:limit] for k, v in word_sets.items()}
    else:
        word_sets = {k: [v[i] for i in np.linspace(0, len(v) - 1, min(WORD_PAIRS, len(v))).round().astype(int)]
                     for k, v in word_sets.items()}
    return docs, human, word_sets


def _texts(docs, word_sets) -> list[str]:
    return docs + [w for pairs in word_sets.values() for p in pairs for w in p[:2]]


def _scores(emb: dict[str, np.ndarray], docs, human, word_sets) -> tuple[float, dict]:
    iu = np.triu_indices(len(docs), 1)
    model = np.array([_cos(emb[docs[i]], emb[docs[j]]) for i, j in zip(*iu, strict=True)])
    details = {"lee50_spearman": spearman(model, human[iu])}
    for name, pairs in word_sets.items():
        cos = [_cos(emb[w1], emb[w2]) for w1, w2, _ in pairs]
        details[f"{name}_spearman"] = spearman(np.array(cos), np.array([s for *_, s in pairs]))
    return pearson(model, human[iu]), details


@register_task("similarity-lee50")
def similarity_lee50(engine: Engine, reference: Engine | None, inputs: tuple[TensorSpec, ...], limit: int | None):
    spec = next((s for s in inputs if s.name == "input_ids"), inputs[0])
    seq_len = spec.shape[-1]
    docs, human, word_sets = _data(limit)
    emb = _embed(engine, _texts(docs, word_sets), seq_len)
    value, details = _scores(emb, docs, human, word_sets)
    ref = None
    if reference is not None:
        ref_emb = _embed(reference, list(emb), seq_len)
        ref, ref_details = _scores(ref_emb, docs, human, word_sets)
        details.update({f"reference_{k}": v for k, v in ref_details.items()})
        cos = np.array([_cos(emb[t], ref_emb[t]) for t in emb])
        details.update(embedding_cos_vs_fp32_mean=float(cos.mean()), embedding_cos_vs_fp32_min=float(cos.min()),
                       texts=len(cos))
    details.update(seq_len=seq_len, word_pairs_per_set=len(word_sets["wordsim353"]))
    return TaskResult("similarity-lee50", "pearson", value, len(docs) * (len(docs) - 1) // 2, ref, details=details)
