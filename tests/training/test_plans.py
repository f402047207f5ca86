"""Every shipped config plans exactly its own experiment: the DAG Snakemake plans for config/X.yaml
holds X's domains, references, methods, seeds and caches and nothing of any other config."""

import itertools

import pytest
from conftest import SHIPPED, planned_jobs

from lsap import REPO_ROOT, config, keys, methods
from lsap.io import hub
from lsap.training import budget


def _expected(cfg: dict) -> dict:
    s = cfg["students"]
    lsap_cached = [m for m in s["methods"] if methods.uses_targets_cache(cfg["methods"][m])]
    parts = [f"part-{p:03d}" for p in range(cfg["corpus"]["parts"])]
    selections = {keys.selection_id(cfg, m) for m in s["methods"] if cfg["methods"][m]["data"] != "all"}
    return {
        "corpus_part": {(("part", p),) for p in parts},
        "corpus": {()},
        "tokenizer": {(("role", r),) for r in ("student", "surrogate")},
        "shards_part": {(("part", p), ("role", r)) for p in parts for r in cfg["shards"]["roles"]},
        "shards": {(("role", r),) for r in cfg["shards"]["roles"]},
        "reference_model": {(("name", n),) for n in cfg["references"]},
        "student": {(("method", m), ("seed", str(seed))) for m, seed in itertools.product(s["methods"], s["seeds"])},
        "evaluate": {(("run", f"{m}-s{seed}"),) for m, seed in itertools.product(s["methods"], s["seeds"])},
        "targets": {(("seed", str(seed)), ("spec", keys.targets_id(cfg, m)))
                    for m, seed in itertools.product(lsap_cached, s["seeds"])},
        "selection": {(("spec", sel),) for sel in selections},
        "selection_part": {(("part", f"{p:03d}"), ("spec", sel)) for sel in selections
                           for p in range(cfg["compute"]["scoring_parts"])},
        "translation": {()}, "overlap": {()}, "table1": {()}, "heldout": {()}, "reference_lines": {()},
        "report": {()},
        "surrogate_lines": {()} if config.lsap_alphas(cfg) else set(),
        "notebook": {()},
        "hub_snapshot": {()} if hub.ids(cfg) else set(),   # first, wherever the config names hub ids
        "hub_snapshot_eval": {()} if hub.ids(cfg) and cfg["evaluation"]["source"] == "lm_eval" else set(),
    }


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_config_plans_exactly_its_own_experiment(path, tmp_path):
    cfg = config.load(path)
    jobs = planned_jobs("--forceall", "--configfile", str(path))
    got = {}
    for rule, wc in jobs:
        got.setdefault(rule, set()).add(wc)
    got.pop("asset", None)  # shared by every run: which ones are fetched depends on resources/
    assert got == {k: v for k, v in _expected(cfg).items() if v}
    assert not (REPO_ROOT / "results" / cfg["run"] / "config.yaml").exists() or \
        config.load(REPO_ROOT / "results" / cfg["run"] / "config.yaml") == cfg  # a dry run writes nothing


def test_paper_config_plans_the_paper_not_the_default():
    """The regression: Snakemake merged the Snakefile's config/tiny.yaml under --configfile."""
    paper = config.load(REPO_ROOT / "config" / "paper.yaml")
    assert "surrogate" not in paper["references"] and not any(
        methods.uses_targets_cache(paper["methods"][m]) for m in paper["students"]["methods"])
    jobs = planned_jobs("--forceall", "--configfile", "config/paper.yaml")
    assert ("reference_model", (("name", "surrogate"),)) not in jobs and not [j for j in jobs if j[0] == "targets"]


def test_the_slurm_profile_plans_the_same_dag():
    local = planned_jobs("--forceall", "--configfile", "config/paper.yaml")
    slurm = planned_jobs("--forceall", "--profile", "slurm", "--configfile", "config/paper.yaml")
    assert sorted(local) == sorted(slurm)


def test_two_configfiles_are_refused():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/tiny.yaml",
                           "config/paper.yaml"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "one --configfile per run" in proc.stdout + proc.stderr


def test_the_paper_student_is_olmo2_0425_1b_exactly():
    """paper.yaml builds its student from a size spec; it must be the hub model's architecture in
    every field that changes the function: shapes, padded vocabulary, untied head, rope θ, norm eps."""
    import torch

    from lsap import models

    cfg = config.load(REPO_ROOT / "config" / "paper.yaml")
    hub = models.hub_table()["allenai/OLMo-2-0425-1B"]
    with torch.device("meta"):
        student = models.build(cfg["students"]["model"], hub["tokenizer_vocab"], 1024, seed=0)
    c = student.config
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                  "intermediate_size", "vocab_size", "tie_word_embeddings", "rms_norm_eps"):
        assert getattr(c, field) == hub[field], field
    assert c.rope_parameters["rope_theta"] == hub["rope_theta"] == 500_000
    assert c.model_type == hub["model_type"] and models.n_params(student) == 1_484_916_736


def test_the_global_batch_makes_paper_the_same_run_on_4_or_8_gpus():
    from lsap.training import plan

    cfg = config.load(REPO_ROOT / "config" / "paper.yaml")
    on = {g: config.validate({**cfg, "compute": {**cfg["compute"], "gpus": g}}) for g in (4, 8)}
    assert {g: plan.accumulation(c["training"], g) for g, c in on.items()} == {4: 4, 8: 2}
    assert plan.global_batch(on[4]) == plan.global_batch(on[8]) == cfg["training"]["global_batch"] == 128
    steps = {g: budget.student(c, "ce", 100_278, c["shards"]["seq_len"]).steps for g, c in on.items()}
    assert steps[4] == steps[8]
    with pytest.raises(config.ConfigError, match=r"training.global_batch 128 is not a multiple of .* 3 GPUs"):
        config.validate({**cfg, "compute": {**cfg["compute"], "gpus": 3}})
    with pytest.raises(config.ConfigError, match=r"global_batch and training.grad_accum are both set"):
        config.validate({**cfg, "training": {**cfg["training"], "grad_accum": 2}})


def test_a_budget_factor_trains_that_share_of_the_matched_budget_and_the_ledger_says_so():
    """CE's `budget_factor` (gpu-small's ce_paper_ratio): the loop spends factor x students.budget_flops,
    the ledger keeps the matched budget and records the factor; 1 is the matched run itself."""
    cfg = config.load(REPO_ROOT / "config" / "gpu-small.yaml")
    ce, part = (budget.student(cfg, m, 49_152, 1024) for m in ("ce", "ce_paper_ratio"))
    factor = cfg["methods"]["ce_paper_ratio"]["budget_factor"]
    assert ce.budget_factor == 1.0 and part.budget_factor == factor < 1
    assert part.loop_flops == pytest.approx(factor * ce.loop_flops)
    assert part.steps == pytest.approx(factor * ce.steps, abs=1)
    assert part.ledger()["matched_budget_flops"] == ce.ledger()["matched_budget_flops"] == cfg["students"]["budget_flops"]
    assert part.ledger()["budget_factor"] == factor
