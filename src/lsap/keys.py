"""One key per job: a hash of exactly the config values the job reads, and of nothing else.

`reads(cfg, job, **wildcards)` is the single statement of what a job depends on in the config.
The Snakemake rules use its hash as their only config param (so a rule reruns when, and only
when, what it reads changes: no interpreter, checkout or config-file path), the CLI recomputes it
from the resolved config and refuses to run when the two differ, and the training loop uses it
as its resume key. Input *files* are Snakemake's business (they are the rules' inputs).
"""

from __future__ import annotations

import hashlib
import json

from lsap import methods  # import-light: torch only inside the builders; numpy
from lsap.config_types import RunConfig
from lsap.methods import objective_cost
from lsap.methods.kinds import SELECTION, STUDENT, TARGETS


class KeyMismatch(RuntimeError):
    """The resolved config on disk is not the one this job was planned with."""


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _pick(d: dict, *names: str) -> dict:
    return {k: d[k] for k in names if k in d}


def _student_plan(cfg: dict) -> dict:
    """What sizes a student run: its model, budget, batch and world size."""
    t = cfg["training"]
    return {"model": cfg["students"]["model"], "budget_flops": cfg["students"]["budget_flops"],
            "budget_counts": cfg["students"]["budget_counts"],
            "batch": _pick(t, "micro_batch", "grad_accum", "global_batch"), "gpus": cfg["compute"]["gpus"],
            "seq_len": cfg["shards"]["seq_len"]}


# how a run writes its resume state and its curves: resume is exact and the curves are a copy of
# log.jsonl, so these change no result and no key
SAVE_KNOBS = ("save_every_steps", "save_every_minutes", "tensorboard")


def _training(cfg: RunConfig) -> dict:
    """What training reads: no save knobs; checkpoint fractions as a set (the loop sorts them);
    `compile` only where the loop compiles (on GPU: other kernels, other bits)."""
    t = {k: v for k, v in cfg["training"].items() if k not in SAVE_KNOBS}
    t["checkpoint_fractions"] = sorted(t["checkpoint_fractions"])
    if not cfg["compute"]["gpus"]:
        t.pop("compile", None)
    return t


# what the corpus job does not read: Table 1's column labels, and the tokens-per-document
# estimate `lsap plan` sizes data with before the shards exist
CORPUS_LABELS, SOURCE_ESTIMATES = ("table1",), ("tokens_per_doc",)


def _corpus(cfg: RunConfig) -> dict:
    """The corpus section as the corpus job reads it, the domains' order included (it is the
    order of the text in every part, hence of the shards)."""
    c = dict(cfg["corpus"])
    c["domains"] = [[name, {**{k: v for k, v in d.items() if k not in CORPUS_LABELS},
                            "sources": [{k: v for k, v in s.items() if k not in SOURCE_ESTIMATES} for s in d["sources"]]}]
                    for name, d in cfg["corpus"]["domains"].items()]
    return c


def _teachers(cfg: RunConfig, roles) -> dict:
    return {r: cfg["students"]["teachers"][r] for r in roles}


def targets_spec(cfg: RunConfig, method: str) -> dict:
    """What LSAP's targets cache holds for a method: the surrogate's candidates (top-k, which
    probabilities) for the sequences runs of this plan read. α, λ and the normaliser only filter
    or weigh them, so every α run of one plan shares one cache."""
    m = cfg["methods"][method]
    return {**_pick(m, *methods.OBJECTIVES[m["objective"]].reading(TARGETS)), "plan": _student_plan(cfg),
            "teachers": _teachers(cfg, ["surrogate"])}


def targets_id(cfg: RunConfig, method: str) -> str:
    m = cfg["methods"][method]
    return f"k{m['top_k']}-{m['probabilities']}-{digest(targets_spec(cfg, method))[:8]}"


def selection_spec(cfg: RunConfig, method: str) -> dict:
    """What a data selection's scores depend on: its scorers, the knobs its plugin declares the
    selection job reads, and the pool it scores (sized by the run's plan and, for SALT_DS, its KD
    phase). A knob the student applies (MiniPLM's keep_frac) is not among them: two keep_frac
    variants share one scoring."""
    m = cfg["methods"][method]
    sel = methods.DATA[m["data"]]
    knobs = _pick(m, "data", *sel.reading(SELECTION))
    if m.get("pool_factor") is not None:  # the pool follows the run's plan: its steps (the objective's
        # teacher and the share of steps it runs on) and, for SALT_DS, its KD phase; not ω, ρ, transition
        kind = methods.OBJECTIVES[m["objective"]]
        knobs.update(plan=_student_plan(cfg), seed=cfg["seed"], objective=m["objective"],
                     teacher_fraction=methods.teacher_fraction(m), objective_teachers=_teachers(cfg, kind.teachers))
    return {**knobs, "teachers": _teachers(cfg, sel.roles), "micro_batch": cfg["training"]["micro_batch"]}


def selection_id(cfg: RunConfig, method: str) -> str:
    return f"{cfg['methods'][method]['data']}-{digest(selection_spec(cfg, method))[:8]}"


def method_of(cfg: RunConfig, job: str, spec: str) -> str:
    """The first student method whose targets cache (job `targets`) or data selection (job
    `selection`) has this spec id: the method the shared job is computed for."""
    for n in cfg["students"]["methods"]:
        m = cfg["methods"][n]
        if job == "targets" and methods.uses_targets_cache(m) and targets_id(cfg, n) == spec:
            return n
        if job == "selection" and m["data"] != "all" and selection_id(cfg, n) == spec:
            return n
    raise KeyError(f"no student method of this config has the {job} spec '{spec}': the rule and the config disagree")


# every student's key held keep_frac (None unless MiniPLM) before knobs declared their jobs: kept,
# so finished runs keep their keys; a selection knob the student reads joins only its own methods' keys
LEGACY_STUDENT_KNOBS = {"keep_frac": None}


def _objective_knobs(cfg: RunConfig, method: str) -> dict:
    """The objective's knobs, less those at the default of a knob added after runs existed
    (ObjectiveKind.key_defaults): the finished runs it cannot change keep their keys."""
    m = cfg["methods"][method]
    kind = methods.OBJECTIVES[m["objective"]]
    return {k: v for k, v in _pick(m, "objective", *kind.reading(STUDENT)).items()
            if k not in kind.key_defaults or v != kind.key_defaults[k]}


def _report_entry(m: dict) -> dict:
    """A method's whole entry, as the report's key reads it, less a knob at the default of one
    added after the committed runs' reports were keyed (ObjectiveKind.report_key_defaults)."""
    kind = methods.OBJECTIVES[m["objective"]]
    return {k: v for k, v in m.items() if k not in kind.report_key_defaults or v != kind.key_defaults[k]}


def heldout_spec(cfg: RunConfig) -> dict:
    """What the heldout job writes from the validation text: the scoring slices and the probes' items."""
    from lsap.data.probe import PROBES

    return {k: cfg["evaluation"].get(k) for k in ("bpb_max_bytes", *(f"{p}_items" for p in PROBES))}


def reads(cfg: RunConfig, job: str, **wc) -> dict:
    """The config values job `job` (a rule name) with wildcards `wc` reads."""
    domains = cfg["corpus"]["domains"]
    if job == "corpus":
        return {"seed": cfg["seed"], "corpus": _corpus(cfg)}
    if job == "tokenizer":
        return {"tokenizer": cfg["tokenizers"][wc["role"]]}
    if job == "shards":
        from lsap.data.shards import FORMAT  # a new on-disk format rebuilds the shards

        return {"seq_len": cfg["shards"]["seq_len"], "format": FORMAT}
    if job == "translation":
        return {}
    if job == "overlap":
        return {"overlap": cfg["analysis"]["overlap"], "domains": list(domains), "run": cfg["run"]}
    if job == "table1":
        return {"table1": cfg["analysis"]["table1"], "columns": {d: s.get("table1") for d, s in domains.items()}}
    if job == "reference_model":
        ref = cfg["references"][wc["name"]]
        return {"reference": ref, "training": _training(cfg), "gpus": cfg["compute"]["gpus"],
                "checkpoints": methods.checkpoint_fractions(cfg, wc["name"])}
    if job == "targets":
        return {"targets": targets_spec(cfg, method_of(cfg, job, wc["spec"])), "seed": int(wc["seed"])}
    if job == "selection":
        return {"selection": selection_spec(cfg, method_of(cfg, job, wc["spec"]))}
    if job == "student":
        m = cfg["methods"][wc["method"]]
        return {"method": _objective_knobs(cfg, wc["method"]),
                "data": selection_spec(cfg, wc["method"]) if m["data"] != "all" else "all",
                **LEGACY_STUDENT_KNOBS, **_pick(m, *methods.DATA[m["data"]].reading(STUDENT)),
                "plan": _student_plan(cfg), "training": _training(cfg),
                "teachers": _teachers(cfg, methods.teacher_roles(m)), "seed": int(wc["seed"])}
    if job == "heldout":
        return {"seed": cfg["seed"], "heldout": heldout_spec(cfg)}
    if job == "evaluate":
        return {"evaluation": cfg["evaluation"]}
    if job == "hub_snapshot":  # what the data and the models need from the hub: nothing of `evaluation:`
        from lsap.io import hub, pin

        return {"specs": [{k: v for k, v in spec.items() if k not in SOURCE_ESTIMATES} for _, _, spec in hub.specs(cfg)],
                "parts": cfg["corpus"]["parts"], "hub": cfg["hub"], "lock": pin.locked(cfg)}
    if job == "hub_snapshot_eval":  # lm-eval's task datasets: the only hub data evaluation reads
        return {"tasks": cfg["evaluation"]["tasks"], "source": cfg["evaluation"]["source"], "hub": cfg["hub"]}
    if job == "surrogate_lines":
        from lsap.config import lsap_alphas

        return {"evaluation": _pick(cfg["evaluation"], "bpb_max_bytes", "bpb_seq_len", "batch_size", "max_length"),
                "alphas": lsap_alphas(cfg), "heldout": heldout_spec(cfg),
                "teachers": _teachers(cfg, ["surrogate"]), "seq_len": cfg["shards"]["seq_len"],
                # each arm's predicted objective cost (lsap.methods.objective_cost) reads these of its knobs
                "methods": {n: objective_cost.reads(cfg["methods"][n]) for n in cfg["students"]["methods"]}}
    if job == "reference_lines":
        from lsap.data.ngram import DISCOUNT, MAX_TRAIN_TOKENS

        return {"bpb_max_bytes": cfg["evaluation"]["bpb_max_bytes"], "discount": DISCOUNT, "max_tokens": MAX_TRAIN_TOKENS,
                "heldout": heldout_spec(cfg)}
    if job == "report":
        from lsap.config import required_assets

        s = cfg["students"]
        return {"run": cfg["run"], "methods": {n: _report_entry(cfg["methods"][n]) for n in s["methods"]},
                "method_order": list(s["methods"]), "seeds": s["seeds"],  # the tables' row order
                "primary_contrast": s["primary_contrast"],
                "budget_flops": s["budget_flops"], "evaluation": cfg["evaluation"], "domains": list(domains),
                "analysis": cfg["analysis"], "assets": required_assets(cfg)}
    raise KeyError(f"no job '{job}' (keys.reads knows: corpus, tokenizer, shards, translation, overlap, table1, "
                   f"reference_model, targets, selection, student, evaluate, reference_lines, surrogate_lines, report, "
                   f"hub_snapshot, hub_snapshot_eval)")


def key(cfg: RunConfig, job: str, **wc) -> str:
    return digest(reads(cfg, job, **wc))


def every_key(cfg: RunConfig) -> dict:
    """Every keyed job of the config (a cache or selection by its method), with its key."""
    from lsap.config import lsap_alphas

    jobs = ["corpus", "shards", "translation", "overlap", "table1", "heldout", "evaluate", "reference_lines", "report"]
    out = {(j,): key(cfg, j) for j in jobs + (["surrogate_lines"] if lsap_alphas(cfg) else [])}
    out.update({("tokenizer", r): key(cfg, "tokenizer", role=r) for r in ("student", "surrogate")})
    out.update({("reference_model", n): key(cfg, "reference_model", name=n) for n in cfg["references"]})
    for m in cfg["students"]["methods"]:
        for s in cfg["students"]["seeds"]:
            out[("student", m, s)] = key(cfg, "student", method=m, seed=s)
            if methods.uses_targets_cache(cfg["methods"][m]):
                spec = targets_id(cfg, m)
                out[("targets", m, s)] = (spec, key(cfg, "targets", spec=spec, seed=s))
        if cfg["methods"][m]["data"] != "all":
            spec = selection_id(cfg, m)
            out[("selection", m)] = (spec, key(cfg, "selection", spec=spec))
    return out


def run_key(cfg: RunConfig) -> str:
    """One digest of every job key of a run: what its published tables name as their config hash, so
    a config edit that changes any job (and so the numbers) without a rerun is seen."""
    return digest(sorted([list(map(str, job)), k] for job, k in every_key(cfg).items()))


def check(cfg: RunConfig, expected: str, job: str, source: str, **wc) -> str:
    """The job's key from `cfg`; raises KeyMismatch (naming the file and the fix) if it is not
    the key the job was planned with."""
    got = key(cfg, job, **wc)
    if expected and got != expected:
        raise KeyMismatch(f"{source} is not the config this {job} job was planned with (key {got}, planned "
                          f"{expected}): another snakemake invocation changed it. Rerun the same snakemake "
                          f"command; the job then runs with the config that is on disk.")
    return got
