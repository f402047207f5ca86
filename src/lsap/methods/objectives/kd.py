"""Vanilla KD: (1−r)·CE + r·KL(surrogate over Σ∩ ‖ student), the surrogate online."""

from __future__ import annotations

from dataclasses import dataclass

from lsap.methods.kinds import ObjectiveKind, knob

NAME = "kd"


@dataclass(frozen=True)
class Knobs:
    kd_ratio: float = knob(0.5, "(1-r) CE + r KL(p_teacher || p_student)", type="number", minimum=0, maximum=1)
    kd_outside_sigma: str = knob("renormalise", "teacher mass outside the shared vocabulary",
                                 enum=["renormalise", "keep_mass"])


def build(cfg, m, model, inputs, dev):
    from lsap.methods.objectives import surrogate_teacher
    from lsap.methods.objectives.teacher_kd_loss import TeacherKD, dense_teacher, sigma_log_q

    k = m.objective
    sur = surrogate_teacher.load(cfg, m, inputs, dev)
    teacher = dense_teacher(sur.logits, log_q=sigma_log_q(sur.s_to_b, k.kd_outside_sigma))
    return TeacherKD(teacher, k.kd_ratio, sur.flops_per_token, name="kd")


KIND = ObjectiveKind(NAME, Knobs, teachers=("surrogate",), translation=True, summary_keys=("kl",),
                     label=lambda m: "kd", teacher_fraction=lambda m: 1.0, build=build)
