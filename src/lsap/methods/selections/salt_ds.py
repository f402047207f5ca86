"""SALT_DS (NOTES §1.2): the KD phase reads the top-m sequences by the teacher's median top-k loss
(m = n_KD × global batch: just enough for the phase), scored with an early teacher checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from lsap.methods.kinds import SELECTION, DataKind, knob

NAME = "salt_ds"


@dataclass(frozen=True)
class Knobs:
    ds_top_k: int = knob(10, "salt_ds: top-k of the teacher", (SELECTION,), type="integer", minimum=1)
    ds_zeros: str = knob("drop", "salt_ds eq. 10: non-top-k positions kept as zeros in the median, or removed",
                         (SELECTION,), enum=["keep", "drop"])
    # also which checkpoint the SALT teacher's training saves (lsap.methods.checkpoint_fractions)
    ds_checkpoint_frac: float = knob(0.125, "salt_ds: score with the SALT teacher's checkpoint at this fraction of "
                                     "its training (SALT §4: 26K of its 208K steps); a pretrained or hub teacher has "
                                     "only 1.0", (SELECTION, "reference_model"), type="number", exclusiveMinimum=0,
                                     maximum=1)
    # the pool is part of what is scored: the selection job reads it
    pool_factor: float | None = knob(None, "score a uniform pool of this many times the sequences the run draws "
                                     "(miniplm: all its steps, salt_ds: the KD steps); null (default): the whole "
                                     "training shard (the papers)", (SELECTION,), type=["number", "null"],
                                     exclusiveMinimum=0)


def scorer(lms, m):
    from lsap.methods.scoring import salt_ds_score

    return lms[0], salt_ds_score(m.selection.ds_top_k, m.selection.ds_zeros)


def indices(objective, scores, pool, n_sequences, m, extra):
    """The KD steps draw from the top-m sequences, the CE steps from everything."""
    import numpy as np

    from lsap.methods.scoring import select_top

    everything, chosen = np.arange(n_sequences), {}

    def index_at(step: int, total_steps: int, global_batch: int):
        n_kd = objective.kd_steps(total_steps)
        if step >= n_kd:
            return everything
        if "top" not in chosen:
            chosen["top"] = pool[select_top(scores, max(1, n_kd * global_batch))]
        return chosen["top"]
    return index_at


def check(cfg, name, m):
    src, frac = cfg["students"]["teachers"].get("salt_teacher", {}), m.selection.ds_checkpoint_frac
    if src.get("kind") != "trained" and frac != 1.0:
        return (f"methods.{name}.ds_checkpoint_frac {frac}: the SALT teacher is a "
                f"{src.get('kind')} model with no early checkpoint: set ds_checkpoint_frac: 1.0")
    return None


KIND = DataKind(NAME, Knobs, roles=("salt_teacher",), objective="salt", scorer=scorer, indices=indices,
                pool_steps=lambda m, plan: round(m.objective.kd_steps_frac * plan.steps),
                scoring_fraction=lambda m: m.selection.ds_checkpoint_frac, check=check)
