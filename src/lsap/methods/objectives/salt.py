"""SALT's KD phase: (1−ω)·CE + ω·CE(P^ρ of a small teacher, student) for the first n_KD steps,
then CE (NOTES §1.2). The teacher is trained by this run (references) in the student's tokenizer."""

from __future__ import annotations

from dataclasses import dataclass

from lsap.methods.kinds import ObjectiveKind, knob

NAME = "salt"


@dataclass(frozen=True)
class Knobs:
    omega: float = knob(0.667, "the KD term's weight omega", type="number", minimum=0, maximum=1)
    rho: float = knob(0.25, "P^rho = softmax(rho z): 0.25 flattens", type="number", exclusiveMinimum=0)
    kd_steps_frac: float = knob(0.1731, "n_KD / n (SALT: 36K / 208K)", type="number", minimum=0, maximum=1)
    transition: str = knob("step", "how omega ends: at once, or linearly over the KD phase", enum=["step", "linear"])


def build(cfg, m, model, inputs, dev):
    import torch

    from lsap import models
    from lsap.methods.objectives.teacher_kd_loss import TeacherKD, dense_teacher

    t = inputs.get("salt_teacher")   # built by the caller (the bench), else the run's trained teacher
    if t is None:
        t = models.load_pretrained(models.resolve(cfg, cfg["students"]["teachers"]["salt_teacher"]), dev)
    student_vocab = model.get_output_embeddings().weight.shape[0]
    if t.get_output_embeddings().weight.shape[0] != student_vocab:
        raise ValueError(f"SALT's teacher has {t.get_output_embeddings().weight.shape[0]} logits, the "
                         f"student {student_vocab}: the teacher must use the student's tokenizer")

    @torch.inference_mode()
    def logits(x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            return t(input_ids=x).logits
    k = m.objective
    return TeacherKD(dense_teacher(logits, rho=k.rho), k.omega,
                                models.forward_flops_per_token(t), k.kd_steps_frac, k.transition, name="salt")


KIND = ObjectiveKind(NAME, Knobs, teachers=("salt_teacher",), translation=False, summary_keys=("kl",),
                     label=lambda m: "salt", teacher_fraction=lambda m: m.objective.kd_steps_frac, build=build)
