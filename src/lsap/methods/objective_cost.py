"""What each training objective costs in bits per byte by design: the cross-entropy against the
data of the objective's own optimum, with the surrogate's distribution standing in for the data.

Every objective here is a weighted sum of NLLs, so at one context its expected loss is
Σ_v n(v)·(−log q(v)) for some non-negative weights n, and the q minimising it is q* = n / W,
W = Σ_v n(v). Against data P its cross-entropy exceeds P's entropy by KL(P ‖ q*): a cost that no
amount of training removes, because it is where the objective's optimum sits.

    CE                 n = P                                                     cost 0
    LSAP (λ, A)        n(v) = P(v) + λ·1{v∈A}·(P(S) − P(v))                      A: the surrogate's
                       (the auxiliary NLL of candidate v is paid whenever the    tokens above α in Σ∩;
                       true token is another one; S: the positions that carry    P(S) = 1 when every
                       auxiliary terms)                                          position does
    random control     n(v) = P(v) + λ·r(v): as many targets as LSAP, drawn from the training
                       unigram u (a draw equal to the true token redrawn once)
    uniform mass       n(v) = P(v) + λ·E|v_t| / V_student over every student entry
    KD (ratio r)       n = (1 − r)·P + r·Q, Q the surrogate over Σ∩ (renormalised, or its own mass)

The split normaliser (the authors' trainer: CE/N + λ·mean auxiliary NLL) is LSAP with
λ_eff = λ / E|v_t|. The other normalisers scale a whole batch by one number and leave the optimum
where it is. A cosine-annealed λ ends at 0: its final objective is CE's.

The stand-in: P is the surrogate's next-token distribution over its own vocabulary at each
student position of the held-out slices (read through Σ∩, as training reads it). Student entries
outside Σ∩ that receive target mass (the random control's and the uniform mass's) are one extra
bucket the data never uses. Float64 throughout.
"""

from __future__ import annotations

import numpy as np

# the knobs of a method entry each closed form reads (the surrogate_lines job's key)
READS = {"lsap": ("alpha", "lambda_scale", "lambda_schedule", "normaliser", "aux_positions", "proposals"),
         "kd": ("kd_ratio", "kd_outside_sigma")}


def reads(m: dict) -> dict:
    """What method_cost reads of method entry `m`."""
    return {k: m[k] for k in ("objective", "data", *READS.get(m["objective"], ())) if k in m}


def weights_lsap(P: np.ndarray, above: np.ndarray, lam, shared: np.ndarray | None = None) -> np.ndarray:
    """n (rows, V) for LSAP at λ (scalar or per row). P (rows, V) sums to 1 per row; `above`
    (rows, V) bool: the candidate set A; `shared` (V,) bool: the true tokens at whose positions
    auxiliary terms are paid (None: every position)."""
    ps = np.ones(len(P)) if shared is None else (P * shared).sum(1)
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), (len(P),))[:, None]
    return P + lam * above * (ps[:, None] - P)


def expected_count(P: np.ndarray, above: np.ndarray, shared: np.ndarray | None = None) -> np.ndarray:
    """E|v_t| per row: the candidates above α other than the true token, at positions that pay them."""
    ps = np.ones(len(P)) if shared is None else (P * shared).sum(1)
    return above.sum(1) * ps - (P * above).sum(1)


def weights_random(P: np.ndarray, above: np.ndarray, lam: float, u: np.ndarray, u_out: float,
                   shared: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n over V, n of the outside bucket per row) for the count-matched random control: at a
    position whose true token is y, k(y) = |A \\ {y}| draws from u, each redrawn once if it equals
    y, so Pr(draw = v | y) = u(v)(1 + u(y)) for v ≠ y and u(y)² for v = y."""
    k = above.sum(1, keepdims=True) - above  # k(y) for each possible true token y
    pays = np.ones_like(P) if shared is None else np.broadcast_to(shared, P.shape).astype(np.float64)
    py = P * k * pays                      # mass of (true token y, its k draws)
    c = (py * (1 + u)).sum(1, keepdims=True)
    to_v = u * c - py * u                  # Σ_{y≠v} P(y)k(y)u(v)(1+u(y)) + P(v)k(v)u(v)² = this
    return P + lam * to_v, lam * u_out * c[:, 0]


def weights_uniform(P: np.ndarray, above: np.ndarray, lam: float, v_student: int, sigma: np.ndarray,
                    shared: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n over V, outside bucket) for the uniform-mass control: λ·|v_t| spread over every one of
    the student's v_student entries; those in Σ∩ (`sigma`) are the V columns' counterparts."""
    per = lam * expected_count(P, above, shared) / v_student
    return P + per[:, None] * sigma, per * (v_student - int(sigma.sum()))


def weights_kd(P: np.ndarray, ratio: float, sigma: np.ndarray, renormalise: bool = True) -> np.ndarray:
    """n for (1 − r)·CE + r·CE(Q, q): Q the data stand-in over Σ∩ (`sigma` (V,) bool)."""
    Q = P * sigma
    if renormalise:
        Q = Q / Q.sum(1, keepdims=True).clip(min=1e-300)
    return (1 - ratio) * P + ratio * Q


def kl_nats(P: np.ndarray, n: np.ndarray, bucket: np.ndarray | None = None) -> np.ndarray:
    """KL(P ‖ n/W) per row, W = Σn (+ the outside bucket)."""
    W = n.sum(1) + (0 if bucket is None else bucket)
    on = P > 0
    ratio = np.where(on, P / np.where(on, n, 1.0), 1.0)
    return (P * np.log(ratio)).sum(1) + np.log(W)


def method_cost(P: np.ndarray, m: dict, alpha_default: float, sigma: np.ndarray, u: np.ndarray,
                u_out: float, v_student: int, split_count: float | None = None) -> np.ndarray | None:
    """KL per row (nats) of method entry `m`'s final objective, or None where no closed form
    applies (a teacher that is not the surrogate, a data selection)."""
    obj = m["objective"]
    if m.get("data", "all") != "all":
        return None
    if obj == "ce":
        return np.zeros(len(P))
    if obj == "kd":
        return kl_nats(P, weights_kd(P, m["kd_ratio"], sigma, m.get("kd_outside_sigma", "renormalise") == "renormalise"))
    if obj != "lsap":
        return None
    lam = m.get("lambda_scale", 1.0) * (0.0 if m.get("lambda_schedule") == "cosine" else 1.0)
    above = (P > m.get("alpha", alpha_default)) & sigma
    shared = sigma if m.get("aux_positions", "shared_target") == "shared_target" else None
    if m.get("normaliser") == "split":
        mean_count = float(expected_count(P, above, shared).mean()) if split_count is None else split_count
        lam = lam / max(mean_count, 1e-12)
    proposals = m.get("proposals", "surrogate")
    if proposals == "unigram":
        n, bucket = weights_random(P, above, lam, u, u_out, shared)
        return kl_nats(P, n, bucket)
    if proposals == "uniform":
        n, bucket = weights_uniform(P, above, lam, v_student, sigma, shared)
        return kl_nats(P, n, bucket)
    return kl_nats(P, weights_lsap(P, above, lam, shared))
