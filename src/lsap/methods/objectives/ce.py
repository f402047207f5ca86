"""Next-token cross-entropy: the baseline every method is measured against."""

from __future__ import annotations

from dataclasses import dataclass

from lsap.methods.kinds import ObjectiveKind

NAME = "ce"


@dataclass(frozen=True)
class Knobs:
    """CE has no knobs of its own (a data selection may add some)."""


def build(cfg, m, model, inputs, dev):
    from lsap.methods.losses import CrossEntropy

    return CrossEntropy()


KIND = ObjectiveKind(NAME, Knobs, teachers=(), translation=False, summary_keys=(), label=lambda m: "ce",
                     teacher_fraction=lambda m: 0.0, build=build)
