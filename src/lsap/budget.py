"""A student's budget: what the matched FLOPs buy a method (its steps, its teacher's charged
inference) and what comes off them first (students.budget_counts). The one home of that
arithmetic: the training stage, the targets cache, the data selection's pool, the forecast and
the tests all call `student`. Above the registry (lsap.methods), which says what a method reads;
lsap.plan below both holds the method-free arithmetic (steps, batch, FLOPs per token)."""

from __future__ import annotations

import math

from lsap import methods, plan
from lsap.config_types import RunConfig


def trained_models_flops(cfg: RunConfig, method: str) -> float:
    """The training budgets of the models this run trains that `method` reads (its teachers,
    its selection's scorers): what `budget_counts: everything` charges it for them."""
    teachers = cfg["students"]["teachers"]
    return float(sum(cfg["references"][teachers[r]["name"]]["budget_flops"]
                     for r in methods.teacher_roles(cfg["methods"][method]) if teachers[r]["kind"] == "trained"))


def fixed_flops(cfg: RunConfig, method: str, selection_flops: float = 0.0) -> float:
    """What the matched budget pays for besides the run's steps (students.budget_counts)."""
    if cfg["students"]["budget_counts"] == "papers":
        return 0.0
    return trained_models_flops(cfg, method) + selection_flops


def student(cfg: RunConfig, method: str, vocab_size: int, seq_len: int, selection_flops: float = 0.0,
            teacher_flops_per_token: int | None = None) -> plan.RunPlan:
    """The plan of a student run of `method`: its teacher's FLOPs are charged on its active steps;
    under `budget_counts: everything` its fixed costs come off the budget first. The teacher's
    FLOPs per token are read from its config unless given (the forecast, before it is trained)."""
    m = cfg["methods"][method]
    kind = methods.OBJECTIVES[m["objective"]]
    teacher = 0 if not kind.teachers else teacher_flops_per_token if teacher_flops_per_token is not None \
        else plan.source_flops_per_token(cfg, cfg["students"]["teachers"][kind.teachers[0]])
    budget = cfg["students"]["budget_flops"] - fixed_flops(cfg, method, selection_flops)
    if budget <= 0:
        raise ValueError(f"method {method}: its fixed costs ({fixed_flops(cfg, method, selection_flops):.3g} FLOPs, "
                         f"budget_counts: everything) exceed students.budget_flops")
    return plan.make(cfg, budget, plan.model_flops_per_token(cfg["students"]["model"], vocab_size, seq_len),
                     teacher, methods.teacher_fraction(m) if teacher else 0.0, seq_len)


def pool_size(cfg: dict, method: str, n_data: int, p) -> int:
    """Sequences a selection scores: all of them, or pool_factor × what the run draws (MiniPLM:
    every step's batch; SALT_DS: its KD phase's), `p` being the student's RunPlan."""
    m = cfg["methods"][method]
    if m["pool_factor"] is None:
        return n_data
    steps = methods.pool_steps(m, p)
    return min(n_data, math.ceil(m["pool_factor"] * steps * p.global_batch))
