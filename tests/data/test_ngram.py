"""The n-gram reference lines against their definitions, computed densely by hand on real text."""

import math

import numpy as np
import pytest

from lsap.data import heldout, ngram, vocab

TEXT = ("The cat sat on the mat. The dog sat on the log. A cat and a dog sat on a mat and a log, "
        "and the cat saw the dog.")
HELD = ["The dog saw a cat on the mat.", "A log and a hat."]


@pytest.fixture(scope="module")
def setup(fetched):
    tok = vocab.load_pretrained("gpt2")
    train, _ = heldout.pack(tok, [TEXT, TEXT[::-1]])
    return tok, ngram.Counts([train[:40], train[40:]], len(tok)), train


def _dense(counts, v):
    """p(·|v) over the whole vocabulary, straight from the formula."""
    V, d = counts.V, ngram.DISCOUNT
    c_vw = counts.pair_count(np.full(V, v), np.arange(V))
    c_v = c_vw.sum()
    if c_v == 0:
        return counts.p_cont
    return np.maximum(c_vw - d, 0) / c_v + d * (c_vw > 0).sum() / c_v * counts.p_cont


def test_counts_and_probabilities_by_hand(setup):
    tok, counts, train = setup
    pairs = list(zip(train[:39], train[1:40], strict=True)) + list(zip(train[40:-1], train[41:], strict=True))
    assert counts.tokens == len(train) and counts.pair_count(np.array([pairs[0][0]]), np.array([pairs[0][1]]))[0] == \
        sum(p == pairs[0] for p in pairs)
    assert counts.p_uni.sum() == pytest.approx(1) and counts.p_cont.sum() == pytest.approx(1)
    stream, scored = heldout.pack(tok, HELD)
    at = np.flatnonzero(scored)
    got = counts.bigram_p(stream[at - 1], stream[at])
    for i, t in enumerate(at):
        dense = _dense(counts, stream[t - 1])
        assert dense.sum() == pytest.approx(1)
        assert got[i] == pytest.approx(dense[stream[t]])
        assert counts.bigram_rank(stream[t - 1:t], stream[t:t + 1])[0] == (dense > dense[stream[t]]).sum()
        assert counts.unigram_rank(stream[t:t + 1])[0] == (counts.p_uni > counts.p_uni[stream[t]]).sum()


def test_scores_of_a_slice(setup):
    tok, counts, _ = setup
    stream, scored = heldout.pack(tok, HELD)
    n_bytes = sum(len(t.encode()) for t in HELD)
    s = ngram.scores(counts, stream, scored, n_bytes)
    at = np.flatnonzero(scored)
    assert s["unigram"]["bpb"] == pytest.approx(-np.log(counts.p_uni[stream[at]]).sum() / (math.log(2) * n_bytes))
    # the bigram knows "on the", "the cat" ...: better than the unigram on text of the same words
    assert s["bigram"]["bpb"] < s["unigram"]["bpb"] and s["bigram"]["top5"] > s["unigram"]["top5"]
    assert s["bigram"]["tokens"] == scored.sum()
