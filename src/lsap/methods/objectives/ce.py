"""Next-token cross-entropy: the baseline every method is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from lsap.methods.kinds import ObjectiveKind, knob

NAME = "ce"


@dataclass(frozen=True)
class Knobs:
    # a CE arm at another budget than the matched one: gpu-small's `ce_paper_ratio` trains on the
    # tokens CE would read over LSAP's if the surrogate cost the student what the paper's does
    # (docs/scales.md); the summary's ledger records the factor beside the matched budget
    budget_factor: float = knob(1.0, "the share of students.budget_flops this run trains with (1: matched FLOPs)",
                                type="number", exclusiveMinimum=0)


def label(m) -> str:
    f = m.objective.budget_factor
    return "ce" if f == 1.0 else f"ce ×{f:g} budget"


def build(cfg, m, model, inputs, dev):
    from lsap.methods.losses import CrossEntropy

    return CrossEntropy()


KIND = ObjectiveKind(NAME, Knobs, teachers=(), translation=False, summary_keys=(), label=label,
                     teacher_fraction=lambda m: 0.0, build=build, key_defaults={"budget_factor": 1.0},
                     report_key_defaults=("budget_factor",),
                     budget_factor=lambda m: m.objective.budget_factor)
