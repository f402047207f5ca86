"""What a method plugin declares (one file per objective in methods/objectives/, per data
selection in methods/selections/): its knobs as a frozen dataclass (names, defaults, what each
means), the teachers and artifacts it reads, its label, its teacher's share of the steps, and how
to build it. The registry (lsap.methods) collects them; every consumer asks the registry.
Torch-free: the Snakefile reads the registry at parse time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable


def knob(default, doc: str):
    """A knob of a method: its default and what it means (the schema's description says the same)."""
    return field(default=default, metadata={"doc": doc})


def knob_names(knobs_class) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(knobs_class))


@dataclass(frozen=True)
class ObjectiveKind:
    name: str
    knobs_class: type                # a frozen dataclass: every knob of this objective (its job key reads all)
    teachers: tuple[str, ...]        # students.teachers roles it runs during training
    translation: bool                # needs the Σ∩ tables (a teacher with another tokenizer)
    summary_keys: tuple[str, ...]    # per-step quantities its runs log (averaged into the summary)
    label: Callable[[dict], str]     # what a method is, whatever the config calls it
    teacher_fraction: Callable[[dict], float]  # share of the steps on which its teacher runs
    build: Callable                  # (cfg, method entry, model, run inputs, device) -> Objective
    # knobs added after runs were finished, at the value that reproduces those runs: left out of the
    # key there, so a new knob does not retrain what it cannot change
    key_defaults: dict = field(default_factory=dict)
    reads_targets_cache: Callable[[dict], bool] = lambda m: False   # the targets stage's cache
    table_fields: tuple[str, ...] = ()   # knobs the tables show as columns (e.g. alpha)

    @property
    def knobs(self) -> tuple[str, ...]:
        return knob_names(self.knobs_class)


@dataclass(frozen=True)
class DataKind:
    name: str
    knobs_class: type | None         # the selection's own knobs (None: all sequences)
    roles: tuple[str, ...]           # students.teachers roles that score the data
    score_knobs: tuple[str, ...]     # knobs the scores depend on (the selection's key reads these)
    # (models loaded for its roles, method entry) -> (model, score function) for lsap.selection
    scorer: Callable | None = None
    # (objective, scores, pool, n_sequences, method entry) -> indices the student reads
    indices: Callable | None = None
    pool_steps: Callable = lambda m, plan: plan.steps   # the steps whose batches its pool is sized by
    kept_fraction: Callable = lambda m: 1.0             # share of its pool the student reads
    scoring_fraction: Callable = lambda m: 1.0          # which checkpoint of its scorers it reads
    # (config, method name, method entry) -> what is wrong with this method in this config, or None
    check: Callable = lambda cfg, name, m: None
