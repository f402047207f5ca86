"""Sparse KD: CE + λ · Σ_c p_s(c) · (−log p_θ(c)) over the surrogate's cached top-k candidates c
(above α; α = 0: all k), each weighted by the surrogate's probability p_s(c) instead of LSAP's
uniform weight 1. The control that tells LSAP's targets from KD's: the same cache, the same
candidates, the teacher's confidence instead of a vote per candidate. Normalised like LSAP's
default: by N + the total auxiliary weight."""

from __future__ import annotations

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


def build(cfg, m, model, inputs, dev):
    from lsap.methods.objectives import surrogate_teacher

    candidates, fpt = surrogate_teacher.cached_candidates(cfg, m, inputs)
    from lsap.methods.objectives.sparse_kd_loss import SparseKD

    return SparseKD(candidates, m.objective.alpha, m.objective.lambda_scale, fpt)


KIND = ObjectiveKind(
    NAME, Knobs, teachers=("surrogate",), translation=True, summary_keys=("aux_nll", "aux_weight_per_pos"),
    label=lambda m: "sparse kd" + (f" α={m.objective.alpha:g}" if m.objective.alpha else f" top-{m.objective.top_k}"),
    teacher_fraction=lambda m: 1.0, build=build, reads_targets_cache=lambda m: True)
