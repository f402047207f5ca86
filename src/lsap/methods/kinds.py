"""What a method plugin declares (one file per objective in methods/objectives/, per data
selection in methods/selections/): its knobs as a frozen dataclass (names, defaults, what each
means), the teachers and artifacts it reads, its label, its teacher's share of the steps, and how
to build it. The registry (lsap.methods) collects them; every consumer asks the registry.
Torch-free: the Snakefile reads the registry at parse time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

# the jobs a knob can be read by (lsap.keys hashes each knob into the key of every job it names;
# a knob changes the student's key whenever it changes any job the student reads)
STUDENT, SELECTION, TARGETS = "student", "selection", "targets"
REQUIRED = dataclasses.MISSING  # a knob without a default: the config must set it (LSAP's alpha)


def knob(default, doc: str, reads: tuple[str, ...] = (STUDENT,), **schema):
    """A method's knob: its default, what it means, the jobs that read it, and its JSON-schema
    constraints (type, enum, minimum, ...): config/schema.yaml's method part is generated from
    these (lsap.methods.schema). `reads=()` declares a knob no job reads (it then changes no key)."""
    meta = {"doc": doc, "reads": tuple(reads), "schema": schema}
    return field(metadata=meta) if default is REQUIRED else field(default=default, metadata=meta)


def knob_names(knobs_class) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(knobs_class)) if knobs_class else ()


def knobs_reading(knobs_class, job: str) -> tuple[str, ...]:
    """The knobs of `knobs_class` that job `job` reads, as their plugin declares."""
    return tuple(f.name for f in dataclasses.fields(knobs_class) if job in f.metadata["reads"]) if knobs_class else ()


@dataclass(frozen=True)
class Method:
    """One `methods:` entry of a config, parsed into its plugins' typed knobs: what every plugin
    callable receives (never the config's dict). `objective` holds the objective's Knobs,
    `selection` the data selection's (None for data: all)."""
    objective_name: str
    data: str
    objective: object
    selection: object | None = None


@dataclass(frozen=True)
class ObjectiveKind:
    name: str
    knobs_class: type                # a frozen dataclass: every knob of this objective (its job key reads all)
    teachers: tuple[str, ...]        # students.teachers roles it runs during training
    translation: bool                # needs the Σ∩ tables (a teacher with another tokenizer)
    summary_keys: tuple[str, ...]    # per-step quantities its runs log (averaged into the summary)
    label: Callable[[Method], str]   # what a method is, whatever the config calls it
    teacher_fraction: Callable[[Method], float]  # share of the steps on which its teacher runs
    build: Callable                  # (cfg, Method, model, run inputs, device) -> Objective
    # knobs added after runs were finished, at the value that reproduces those runs: left out of the
    # key there, so a new knob does not retrain what it cannot change
    key_defaults: dict = field(default_factory=dict)
    # of those, the ones added after the committed runs' reports were keyed (whose key holds every
    # method's whole entry): left out of the report's key at that value too
    report_key_defaults: tuple[str, ...] = ()
    reads_targets_cache: Callable[[Method], bool] = lambda m: False   # the targets stage's cache
    table_fields: tuple[str, ...] = ()   # knobs the tables show as columns (e.g. alpha)
    # the share of students.budget_flops the run trains with (1: matched FLOPs; lsap.training.budget)
    budget_factor: Callable[[Method], float] = lambda m: 1.0

    @property
    def knobs(self) -> tuple[str, ...]:
        return knob_names(self.knobs_class)

    def reading(self, job: str) -> tuple[str, ...]:
        return knobs_reading(self.knobs_class, job)


@dataclass(frozen=True)
class DataKind:
    name: str
    knobs_class: type | None         # the selection's own knobs (None: all sequences)
    roles: tuple[str, ...]           # students.teachers roles that score the data
    objective: str | None = None     # the one objective it pairs with (miniplm: ce; salt_ds: salt)
    # (models loaded for its roles, Method) -> (model, score function) for lsap.methods.scoring
    scorer: Callable | None = None
    # (objective, scores, pool, n_sequences, Method, summary extras) -> indices the student reads
    indices: Callable | None = None
    pool_steps: Callable = lambda m, plan: plan.steps   # the steps whose batches its pool is sized by
    kept_fraction: Callable = lambda m: 1.0             # share of its pool the student reads
    scoring_fraction: Callable = lambda m: 1.0          # which checkpoint of its scorers it reads
    # (config, method name, Method) -> what is wrong with this method in this config, or None
    check: Callable = lambda cfg, name, m: None

    @property
    def knobs(self) -> tuple[str, ...]:
        return knob_names(self.knobs_class)

    def reading(self, job: str) -> tuple[str, ...]:
        return knobs_reading(self.knobs_class, job)
