"""The closed-form optimum of each objective (lsap.methods.objective_cost) against a direct minimisation
of the expected loss, in float64 on a small vocabulary, with the expected loss written out term by
term from the objective's definition (which targets are paid at which true token)."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax

from lsap.methods import objective_cost as oc

V = 7


def _data(seed=0):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(V) * 0.7, size=3)
    sigma = np.array([1, 1, 1, 0, 1, 1, 0], dtype=bool)   # Σ∩: columns 3 and 6 have no student counterpart
    above = (P > 0.12) & sigma
    return P, sigma, above


def _minimised_kl(p, weights_of_y, n_out=V):
    """min_q E_{y~p}[Σ_v w_y(v)·(−log q(v))] over q on n_out entries, then KL(p ‖ q) on the first V."""
    def loss(z):
        lq = log_softmax(z)
        return sum(p[y] * -(weights_of_y(y) * lq).sum() for y in range(V))
    z = minimize(loss, np.zeros(n_out), method="BFGS", options={"gtol": 1e-11}).x
    lq = log_softmax(z)[:V]
    on = p > 0
    return float((p[on] * (np.log(p[on]) - lq[on])).sum())


@pytest.mark.parametrize("lam", [1.0, 0.1])
@pytest.mark.parametrize("shared_only", [False, True])
def test_lsap_optimum_matches_direct_minimisation(lam, shared_only):
    P, sigma, above = _data()
    shared = sigma if shared_only else None
    got = oc.kl_nats(P, oc.weights_lsap(P, above, lam, shared))
    for r in range(len(P)):
        def w(y, r=r):
            out = np.eye(V)[y].copy()
            if not shared_only or sigma[y]:
                out += lam * (above[r] & (np.arange(V) != y))   # every candidate but the true token
            return out
        assert got[r] == pytest.approx(_minimised_kl(P[r], w), abs=1e-7)


def test_lsap_at_lambda_one_is_flat_over_the_candidates():
    P, sigma, above = _data(3)
    n = oc.weights_lsap(P, above, 1.0)
    q = n / n.sum(1, keepdims=True)
    for r in range(len(P)):
        if above[r].sum() > 1:
            assert np.ptp(q[r][above[r]]) < 1e-12


def test_random_control_optimum_matches_direct_minimisation():
    P, sigma, above = _data(1)
    rng = np.random.default_rng(5)
    u_full = rng.dirichlet(np.ones(V + 1))          # the last entry: student tokens outside Σ∩ (one bucket)
    u, u_out = u_full[:V] * sigma, u_full[:V][~sigma].sum() + u_full[V]
    u_all = np.append(u, u_out)
    lam = 0.7
    n, bucket = oc.weights_random(P, above, lam, u, u_out)
    got = oc.kl_nats(P, n, bucket)
    for r in range(len(P)):
        def w(y, r=r):
            k = above[r].sum() - above[r][y]
            draw = u_all * (1 + u_all[y])                 # a first draw equal to y is redrawn once
            draw[y] = u_all[y] ** 2
            return np.append(np.eye(V)[y], 0.0) + lam * k * draw
        assert got[r] == pytest.approx(_minimised_kl(P[r], w, V + 1), abs=1e-7)


def test_kd_and_uniform_optima():
    P, sigma, above = _data(2)
    got = oc.kl_nats(P, oc.weights_kd(P, 0.5, sigma))
    for r in range(len(P)):
        Q = P[r] * sigma / (P[r] * sigma).sum()
        assert got[r] == pytest.approx(_minimised_kl(P[r], lambda y, r=r, Q=Q: 0.5 * np.eye(V)[y] + 0.5 * Q), abs=1e-7)
    v_student = 9   # 5 entries of Σ∩ and 4 others
    n, bucket = oc.weights_uniform(P, above, 1.0, v_student, sigma)
    got = oc.kl_nats(P, n, bucket)
    for r in range(len(P)):
        def w(y, r=r):
            k = above[r].sum() - above[r][y]
            spread = np.append(sigma.astype(float), v_student - sigma.sum()) / v_student
            return np.append(np.eye(V)[y], 0.0) + k * spread
        assert got[r] == pytest.approx(_minimised_kl(P[r], w, V + 1), abs=1e-7)


def test_method_cost_readings():
    """CE and an annealed λ cost nothing; split divides λ by the mean count; a selection has no closed form."""
    P, sigma, above = _data(4)
    kw = dict(alpha_default=0.05, sigma=sigma, u=np.full(V, 1 / V), u_out=0.0, v_student=V)
    base = {"objective": "lsap", "alpha": 0.12, "lambda_scale": 1.0, "normaliser": "total_targets", "data": "all",
            "aux_positions": "all"}
    assert not oc.method_cost(P, {"objective": "ce"}, **kw).any()
    assert not oc.method_cost(P, {**base, "lambda_schedule": "cosine"}, **kw).any()
    split = oc.method_cost(P, {**base, "normaliser": "split"}, **kw)
    mean = oc.expected_count(P, (P > 0.12) & sigma).mean()
    assert split == pytest.approx(oc.method_cost(P, {**base, "lambda_scale": 1 / mean}, **kw))
    assert oc.method_cost(P, {"objective": "ce", "data": "miniplm"}, **kw) is None
