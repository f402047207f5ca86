"""MiniPLM's difference sampling (NOTES §1.3): score each pool sequence by log p_teacher − log
p_reference, keep the top keep_frac, train CE on them in corpus order."""

from __future__ import annotations

from dataclasses import dataclass

from lsap.methods.kinds import SELECTION, STUDENT, DataKind, knob

NAME = "miniplm"


@dataclass(frozen=True)
class Knobs:
    # applied by the student to the scores: two keep_frac variants share one scoring
    keep_frac: float = knob(0.5, "MiniPLM's alpha: share of sequences kept", (STUDENT,), type="number",
                            exclusiveMinimum=0, maximum=1)
    # the pool is part of what is scored: the selection job reads it
    pool_factor: float | None = knob(None, "score a uniform pool of this many times the sequences the run draws "
                                     "(miniplm: all its steps, salt_ds: the KD steps); null (default): the whole "
                                     "training shard (the papers)", (SELECTION,), type=["number", "null"],
                                     exclusiveMinimum=0)


def scorer(lms, m):
    from lsap.methods.scoring import miniplm_score

    return tuple(lms), miniplm_score


def indices(objective, scores, pool, n_sequences, m, extra):
    from lsap.methods.scoring import select_top

    chosen = pool[select_top(scores, m.selection.keep_frac)]
    extra["selected_sequences"] = len(chosen)
    return chosen


KIND = DataKind(NAME, Knobs, roles=("miniplm_reference", "miniplm_teacher"), objective="ce", scorer=scorer,
                indices=indices, kept_fraction=lambda m: m.selection.keep_frac)
