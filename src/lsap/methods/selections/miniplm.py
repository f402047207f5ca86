"""MiniPLM's difference sampling (NOTES §1.3): score each pool sequence by log p_teacher − log
p_reference, keep the top keep_frac, train CE on them in corpus order."""

from __future__ import annotations

from dataclasses import dataclass

from lsap.methods.kinds import DataKind, knob

NAME = "miniplm"


@dataclass(frozen=True)
class Knobs:
    keep_frac: float = knob(0.5, "MiniPLM's alpha: the share of scored sequences kept")
    pool_factor: float | None = knob(None, "score a uniform pool of this many times the sequences the run draws")


def scorer(lms, m):
    from lsap.selection import miniplm_score

    return tuple(lms), miniplm_score


def indices(objective, scores, pool, n_sequences, m, extra):
    from lsap.selection import select_top

    chosen = pool[select_top(scores, m["keep_frac"])]
    extra["selected_sequences"] = len(chosen)
    return chosen


KIND = DataKind(NAME, Knobs, roles=("miniplm_reference", "miniplm_teacher"), score_knobs=(), scorer=scorer,
                indices=indices, kept_fraction=lambda m: m["keep_frac"])
