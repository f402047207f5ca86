"""Sparse KD: CE + λ · Σ_c p_s(c) · (−log p_θ(c)) over the surrogate's cached top-k candidates c
(above α; α = 0: all k), each weighted by the surrogate's probability p_s(c) instead of LSAP's
uniform weight 1. The control that tells LSAP's targets from KD's: the same cache, the same
candidates, the teacher's confidence instead of a vote per candidate. Normalised like LSAP's
default: by N + the total auxiliary weight."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from lsap.methods.kinds import STUDENT, TARGETS, ObjectiveKind, knob

NAME = "sparse_kd"


@dataclass(frozen=True)
class Knobs:
    alpha: float = knob(0.0, "keep candidates with p > alpha (0: all top_k)", type="number", minimum=0,
                        exclusiveMaximum=1)
    lambda_scale: float = knob(1.0, "the weight of the probability-weighted candidates", type="number",
                               exclusiveMinimum=0)
    top_k: int = knob(15, "candidates per position in the targets cache (shared with LSAP's)", (TARGETS, STUDENT),
                      type="integer", minimum=1)
    probabilities: str = knob("surrogate", "the cache's probabilities: the surrogate's own, or renormalised",
                              (TARGETS, STUDENT), enum=["surrogate", "renormalised"])
    targets: str = knob("cached", "always the targets stage's cache", enum=["cached"])


@functools.cache
def objective_class():
    """The objective (made on first use: the registry stays torch-free)."""
    import torch

    from lsap.fused_nll import fused_nll
    from lsap.objectives import CrossEntropy, _full

    class SparseKD(CrossEntropy):
        name = NAME
        teacher_fraction = 1.0

        def __init__(self, candidates, alpha: float, lambda_scale: float = 1.0, teacher_flops_per_token: int = 0):
            self.candidates, self.alpha, self.lambda_scale = candidates, alpha, lambda_scale
            self.teacher_flops_per_token = teacher_flops_per_token

        def __call__(self, net, x, seq_ids, step, total_steps):
            inputs, targets = x[:, :-1], x[:, 1:]
            cand_ids, cand_logp = self.candidates(inputs, targets, seq_ids)
            floor = math.log(self.alpha) if self.alpha > 0 else -math.inf
            h = self._hidden(net, inputs)
            n, k = h.shape[0], cand_ids.shape[-1]
            dt = _full(h, (), 0).dtype
            logp = cand_logp.reshape(n, k).to(dt)
            w = torch.where(logp > floor, self.lambda_scale * logp.exp(), 0.0)   # p_s(c), 0 off the candidates
            total = w.sum()
            ids = torch.cat([targets.reshape(n, 1), cand_ids.reshape(n, k)], 1)
            stats = {}
            loss = fused_nll(h, self.head, ids, torch.cat([_full(h, (n, 1), 1.0), w], 1), stats=stats) / (n + total)
            return loss, {"loss": loss.detach(), "ce": stats["nll0"] / n, "aux_nll": stats["aux"] / total.clamp(min=1e-30),
                          "aux_weight_per_pos": total / n}
    return SparseKD


def build(cfg, m, model, inputs, dev):
    from lsap.methods.objectives import surrogate_teacher

    candidates, fpt = surrogate_teacher.cached_candidates(cfg, m, inputs)
    return objective_class()(candidates, m.objective.alpha, m.objective.lambda_scale, fpt)


KIND = ObjectiveKind(
    NAME, Knobs, teachers=("surrogate",), translation=True, summary_keys=("aux_nll", "aux_weight_per_pos"),
    label=lambda m: "sparse kd" + (f" α={m.objective.alpha:g}" if m.objective.alpha else f" top-{m.objective.top_k}"),
    teacher_fraction=lambda m: 1.0, build=build, reads_targets_cache=lambda m: True)
