"""A student's budget: what the matched FLOPs buy a method (its steps, its teacher's charged
inference) and what comes off them first (students.budget_counts). The one home of that
arithmetic: the training stage, the targets cache, the data selection's pool, the forecast and
the tests all call `student`. Above the registry (lsap.methods), which says what a method reads;
lsap.training.plan and lsap.models.flops below both hold the method-free arithmetic (steps, batch, FLOPs per token)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lsap import methods
from lsap.config_types import RunConfig
from lsap.models import flops
from lsap.training import plan


def trained_models_flops(cfg: RunConfig, method: str) -> float:
    """The training budgets of the models this run trains that `method` reads (its teachers,
    its selection's scorers): what `budget_counts: everything` charges it for them."""
    teachers = cfg["students"]["teachers"]
    return float(sum(cfg["references"][teachers[r]["name"]]["budget_flops"]
                     for r in methods.teacher_roles(cfg["methods"][method]) if teachers[r]["kind"] == "trained"))


def _fixed(budget_counts: str, trained_models: float, selection: float) -> float:
    return 0.0 if budget_counts == "papers" else trained_models + selection


@dataclass(frozen=True)
class Budget:
    """A training run's budget, computed once: what the matched FLOPs pay for besides the steps,
    and the plan of steps they buy. The train stage hands it to the loop (whose guard refuses to
    train another number of steps), the targets and select stages size their data with it, the
    forecast prices it, and the summary's compute ledger is its `ledger()`."""
    matched_flops: float        # students.budget_flops (a reference: its own budget_flops)
    trained_models_flops: float  # the models this run trained for the method (charged under `everything`)
    selection_flops: float      # its data selection's scoring
    budget_counts: str          # students.budget_counts
    plan: plan.RunPlan
    budget_factor: float = 1.0  # the method's share of matched_flops (lsap.methods.budget_factor)

    @property
    def fixed_flops(self) -> float:
        """What comes off the matched budget before the steps (budget_counts: everything)."""
        return _fixed(self.budget_counts, self.trained_models_flops, self.selection_flops)

    @property
    def loop_flops(self) -> float:
        """What the loop may spend: the steps and the teacher's inference on them (the ledger's
        `training_flops` is the steps' share alone)."""
        return self.matched_flops * self.budget_factor - self.fixed_flops

    @property
    def spent_flops(self) -> float:
        """What the plan's whole steps spend (≤ training_flops: the steps are whole)."""
        p = self.plan
        return p.tokens * (p.train_flops_per_token + p.teacher_flops_per_token * p.teacher_fraction)

    @property
    def steps(self) -> int:
        return self.plan.steps

    @property
    def tokens(self) -> int:
        return self.plan.tokens

    @property
    def global_batch(self) -> int:
        return self.plan.global_batch

    def ledger(self) -> dict:
        """Every cost of the run, charged to the matched budget or not (the summary's fields)."""
        p = self.plan
        train = p.tokens * p.train_flops_per_token
        return {"matched_budget_flops": self.matched_flops, "budget_counts": self.budget_counts,
                "training_flops": train, "teacher_inference_flops": p.tokens * p.teacher_flops_per_token
                * p.teacher_fraction, "trained_models_flops": self.trained_models_flops,
                "selection_flops": self.selection_flops, "budget_factor": self.budget_factor}


def student(cfg: RunConfig, method: str, vocab_size: int, seq_len: int, selection_flops: float = 0.0,
            teacher_flops_per_token: int | None = None) -> Budget:
    """The budget of a student run of `method`: its teacher's FLOPs are charged on its active steps;
    under `budget_counts: everything` its fixed costs come off the budget first. The teacher's
    FLOPs per token are read from its config unless given (the forecast, before it is trained)."""
    m = cfg["methods"][method]
    kind = methods.OBJECTIVES[m["objective"]]
    teacher = 0 if not kind.teachers else teacher_flops_per_token if teacher_flops_per_token is not None \
        else flops.source_flops_per_token(cfg, cfg["students"]["teachers"][kind.teachers[0]])
    s, trained, factor = cfg["students"], trained_models_flops(cfg, method), methods.budget_factor(m)
    fixed = _fixed(s["budget_counts"], trained, selection_flops)
    loop = s["budget_flops"] * factor - fixed
    if loop <= 0:
        raise ValueError(f"method {method}: its fixed costs ({fixed:.3g} FLOPs, budget_counts: everything) "
                         f"exceed its budget ({factor:g} x students.budget_flops)")
    run = plan.make(cfg, loop, flops.model_flops_per_token(s["model"], vocab_size, seq_len),
                    teacher, methods.teacher_fraction(m) if teacher else 0.0, seq_len)
    return Budget(s["budget_flops"], trained, selection_flops, s["budget_counts"], run, factor)


def reference(cfg: RunConfig, name: str, vocab_size: int, seq_len: int) -> Budget:
    """The budget of a model this run trains for a method (a `references` entry): CE, no teacher."""
    ref = cfg["references"][name]
    return Budget(ref["budget_flops"], 0.0, 0.0, "papers", plan.make(
        cfg, ref["budget_flops"], flops.model_flops_per_token(ref["model"], vocab_size, seq_len), 0, 0.0, seq_len))


def pool_size(cfg: dict, method: str, n_data: int, p) -> int:
    """Sequences a selection scores: all of them, or pool_factor × what the run draws (MiniPLM:
    every step's batch; SALT_DS: its KD phase's), `p` being the student's Budget (or RunPlan)."""
    m = cfg["methods"][method]
    if m.get("pool_factor") is None:  # a selection without the knob scores the whole shard
        return n_data
    steps = methods.pool_steps(m, p)
    return min(n_data, math.ceil(m["pool_factor"] * steps * p.global_batch))
