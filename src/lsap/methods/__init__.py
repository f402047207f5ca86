"""The method registry: every objective and data selection, each one plugin file.

A student method = an objective (the loss, and the teacher it runs; methods/objectives/<name>.py)
+ the sequences it trains on (all, or a selection: methods/selections/<name>.py), assembled from
the config's `methods.<name>` entry and the files earlier stages wrote. Config validation, the
Snakemake rules' inputs and wildcards, the job keys, the plan, the CLI and the tables all ask this
registry; none of them compares a method's name to a string. The training loop is the same for
every method.

    ce        CE on all sequences
    lsap      CE + NLL of the surrogate's candidates above α (online, or from the targets cache)
    kd        (1−r)·CE + r·KL(surrogate over Σ∩ ‖ student), online
    salt      (1−ω)·CE + ω·CE(P^ρ_teacher, student) for the first n_KD steps, then CE
    sparse_kd CE + the surrogate's cached top-k candidates, each weighted by its probability
    data: miniplm  CE on the top keep_frac of sequences by difference score, in corpus order
    data: salt_ds  the KD phase on the top-m sequences by SALT_DS score (m = n_KD·batch), then all

Adding a method: one plugin file (its knobs with their defaults, bounds and the jobs that read
them; teachers, label, builder), a `methods:` entry in a config, a test of its loss. The config
schema's method part is generated from the knobs (lsap.methods.schema). Torch is imported only
inside the builders: the Snakefile reads the registry at parse time.
"""

from __future__ import annotations

import importlib
import pkgutil

from lsap.methods import objectives as _objectives
from lsap.methods import selections as _selections
from lsap.methods.kinds import DataKind, Method, ObjectiveKind


def _plugins(package) -> dict:
    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.endswith("_loss"):  # a plugin's loss (torch): its builder imports it, the registry never
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if hasattr(module, "KIND"):   # helpers shared by plugins have none
            found[module.NAME] = module.KIND
    return found


# the config's method every contrast is measured against (named once: the tables, the statistics,
# the sweep's order and the config's checks read it here)
BASELINE = "ce"

OBJECTIVES: dict[str, ObjectiveKind] = _plugins(_objectives)
DATA: dict[str, DataKind] = {"all": DataKind("all", None, ()), **_plugins(_selections)}
SELECTIONS = tuple(d for d in DATA if d != "all")   # the data selections a scoring job runs for


def parse(m: dict | Method) -> Method:
    """A `methods:` entry as its plugins' typed knobs; a knob it leaves out takes the knob's default
    (a validated entry has them all), one without a default fails here."""
    if isinstance(m, Method):
        return m
    obj, data = OBJECTIVES[m["objective"]], DATA[m.get("data", "all")]
    return Method(m["objective"], data.name, obj.knobs_class(**{k: m[k] for k in obj.knobs if k in m}),
                  data.knobs_class(**{k: m[k] for k in data.knobs if k in m}) if data.knobs_class else None)


def teacher_fraction(m: dict | Method) -> float:
    """Share of a student's steps on which its objective's teacher runs."""
    meth = parse(m)
    return OBJECTIVES[meth.objective_name].teacher_fraction(meth)


def budget_factor(m: dict | Method) -> float:
    """The share of students.budget_flops a student of this method trains with (1: matched)."""
    meth = parse(m)
    return OBJECTIVES[meth.objective_name].budget_factor(meth)


def pool_steps(m: dict | Method, plan) -> int:
    """The steps whose batches a selection's pool is sized by."""
    meth = parse(m)
    return DATA[meth.data].pool_steps(meth, plan)


def kept_fraction(m: dict | Method) -> float:
    meth = parse(m)
    return DATA[meth.data].kept_fraction(meth)


def check(cfg: dict, name: str, m: dict | Method) -> str | None:
    meth = parse(m)
    return DATA[meth.data].check(cfg, name, meth)


def scorer(lms, m: dict | Method):
    meth = parse(m)
    return DATA[meth.data].scorer(lms, meth)


def schema_defs() -> dict:
    """The config schema's method definitions, from the plugins' knobs (lsap.methods.schema)."""
    from lsap.methods.schema import method_defs

    return method_defs(OBJECTIVES, {d: k for d, k in DATA.items() if k.knobs_class})


def scoring_fraction(m: dict) -> float:
    """Which checkpoint of its scoring model a data selection reads (SALT_DS: an early one)."""
    meth = parse(m)
    return DATA[meth.data].scoring_fraction(meth)


def checkpoint_fractions(cfg: dict, name: str) -> list[float]:
    """The checkpoints the references stage saves for model `name`: training.checkpoint_fractions
    and every earlier one a selection of this run scores with (SALT_DS's early checkpoint)."""
    fr = set(cfg["training"]["checkpoint_fractions"])
    for method in cfg["students"]["methods"]:
        m = cfg["methods"][method]
        for role in DATA[m["data"]].roles:
            src = cfg["students"]["teachers"][role]
            if src["kind"] == "trained" and src["name"] == name:
                fr.add(scoring_fraction(m))
    return sorted(fr)


def teacher_roles(m: dict) -> list[str]:
    """The students.teachers entries a method reads: its objective's teacher, its data selection's models."""
    return list(dict.fromkeys(OBJECTIVES[m["objective"]].teachers + DATA[m["data"]].roles))


def label(m: dict) -> str:
    """'lsap α=0.05 anneal', 'miniplm', 'salt_ds', ...: the method's kind, for tables."""
    meth = parse(m)
    return meth.data if meth.data != "all" else OBJECTIVES[meth.objective_name].label(meth)


def uses_targets_cache(m: dict) -> bool:
    meth = parse(m)
    return OBJECTIVES[meth.objective_name].reads_targets_cache(meth)


def build(cfg: dict, name: str, model, n_sequences: int, translation=None, targets_dir=None,
          scores=None, dev=None, data=None):
    """(objective, indices, extra summary fields) for student method `name`. `indices` is None
    (all sequences), an array, or `(step, total_steps, global_batch) -> array`. `data`: the
    training Shard (its unigram, for the random-target and uniform-mass controls)."""
    from lsap import models
    from lsap.data import scores as score_files

    m = parse(cfg["methods"][name])
    inputs = {"translation": translation, "targets": targets_dir, "n_sequences": n_sequences, "data": data}
    obj = OBJECTIVES[m.objective_name].build(cfg, m, model, inputs, dev or models.device())
    indices, extra = None, {"method": name}
    if m.data != "all":
        if scores is None:
            raise ValueError(f"method '{name}' (data: {m.data}) needs the selection scores (--scores)")
        score_arr, pool, info = score_files.load_scores(scores)
        extra["selection_flops"] = info["flops"]
        if len(score_arr) != len(pool) or (len(pool) and pool.max() >= n_sequences):
            raise ValueError(f"{scores} does not score this shard's sequences: rerun the selection rule")
        extra["selection_pool"] = len(pool)
        indices = DATA[m.data].indices(obj, score_arr, pool, n_sequences, m, extra)
    return obj, indices, extra
