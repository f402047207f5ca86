"""Sparse KD (methods/objectives/sparse_kd_loss.py) against a float64 loop: CE plus each cached
candidate above α weighted by the surrogate's probability, normalised by N + the total weight."""

import math

import pytest
import torch
from test_objectives import _Head, _setup

from lsap.methods.objectives.sparse_kd_loss import SparseKD


@pytest.mark.parametrize("alpha,lam", [(0.0, 1.0), (0.1, 1.0), (0.0, 0.3), (0.6, 1.0)])
def test_sparse_kd_loss_by_hand(alpha, lam):
    net, W, x, cand, logp = _setup()
    logp[0, 1, 2] = -math.inf   # a slot without a candidate (its token outside Σ∩)
    obj = SparseKD(lambda i, t, s: (cand, logp), alpha, lam).bind(_Head(W))
    loss, parts = obj(net, x, None, 0, 10)
    lp = torch.log_softmax(net.h @ W.T, -1).numpy()
    y, c, p = x[:, 1:].numpy(), cand.numpy(), logp.double().exp().numpy()
    ce_sum = aux_sum = weight = 0.0
    for b in range(2):
        for t in range(3):
            ce_sum -= lp[b, t, y[b, t]]
            for j in range(3):
                if p[b, t, j] > alpha:   # α = 0: every candidate the cache holds
                    aux_sum -= lam * p[b, t, j] * lp[b, t, c[b, t, j]]
                    weight += lam * p[b, t, j]
    assert loss.item() == pytest.approx((ce_sum + aux_sum) / (6 + weight), abs=1e-12)
    assert float(parts["ce"]) == pytest.approx(ce_sum / 6, abs=1e-12)
    assert float(parts["aux_weight_per_pos"]) == pytest.approx(weight / 6, abs=1e-12)


def test_sparse_kd_differs_from_lsap_by_its_weights_only():
    """With every candidate's probability 1 (impossible for a surrogate, but the arithmetic's
    identity) sparse KD is LSAP at α = 0 with the total-targets normaliser."""
    from lsap.methods.objectives import lsap_loss

    net, W, x, cand, _ = _setup()
    ones = torch.zeros(cand.shape, dtype=torch.float64)
    skd = SparseKD(lambda i, t, s: (cand, ones), 0.0).bind(_Head(W))(net, x, None, 0, 10)[0]
    lsap = lsap_loss.LSAP(lambda i, t, s: (cand, ones), alpha=1e-9).bind(_Head(W))(net, x, None, 0, 10)[0]
    assert skd.item() == pytest.approx(lsap.item(), abs=1e-12)
