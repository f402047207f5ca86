"""SALT_DS (NOTES §1.2): the KD phase reads the top-m sequences by the teacher's median top-k loss
(m = n_KD × global batch: just enough for the phase), scored with an early teacher checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from lsap.methods.kinds import DataKind, knob

NAME = "salt_ds"


@dataclass(frozen=True)
class Knobs:
    ds_top_k: int = knob(10, "top-k of the teacher")
    ds_zeros: str = knob("drop", "non-top-k positions kept as zeros in the median, or removed")
    ds_checkpoint_frac: float = knob(0.125, "score with the teacher's checkpoint at this fraction of its training")
    pool_factor: float | None = knob(None, "score a uniform pool of this many times the KD steps' sequences")


def scorer(lms, m):
    from lsap.selection import salt_ds_score

    return lms[0], salt_ds_score(m["ds_top_k"], m["ds_zeros"])


def indices(objective, scores, pool, n_sequences, m, extra):
    """The KD steps draw from the top-m sequences, the CE steps from everything."""
    import numpy as np

    from lsap.selection import select_top

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
    src = cfg["students"]["teachers"].get("salt_teacher", {})
    if src.get("kind") != "trained" and m["ds_checkpoint_frac"] != 1.0:
        return (f"methods.{name}.ds_checkpoint_frac {m['ds_checkpoint_frac']}: the SALT teacher is a "
                f"{src.get('kind')} model with no early checkpoint: set ds_checkpoint_frac: 1.0")
    return None


KIND = DataKind(NAME, Knobs, roles=("salt_teacher",), score_knobs=("ds_top_k", "ds_zeros", "ds_checkpoint_frac"),
                scorer=scorer, indices=indices, pool_steps=lambda m, plan: round(m["kd_steps_frac"] * plan.steps),
                scoring_fraction=lambda m: m.get("ds_checkpoint_frac", 1.0), check=check)
