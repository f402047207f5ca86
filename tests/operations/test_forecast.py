"""`lsap plan`: the paper config priced as the papers size it, and the warnings a cluster user needs."""

import copy
import json
import os
import subprocess
import sys

import pytest

from lsap import REPO_ROOT, config
from lsap.io import hub
from lsap.models import flops
from lsap.operations import forecast, forecast_table
from lsap.training import plan

PAPER = REPO_ROOT / "config" / "paper.yaml"


@pytest.fixture(scope="module")
def paper():
    os.environ["HF_HUB_OFFLINE"] = "1"  # this machine has no hub: shapes from config/hub_models.yaml
    return config.load(PAPER)


@pytest.fixture(scope="module")
def priced(paper):
    return forecast.price(paper)


def _job(priced, job, method):
    return next(j for j in priced["jobs"] if j["job"] == job and j["method"] == method)


def test_the_paper_reads_its_26b_tokens_once(priced, paper):
    ce = _job(priced, "student", "ce-s0")
    assert ce["tokens"] == pytest.approx(26.0e9, rel=0.01)  # 2.32e20 / (6 · 1.485 B)
    assert _job(priced, "student", "lsap_a0.05-s0")["tokens"] == pytest.approx(22.3e9, rel=0.01)  # LSAP §4
    trained = [j for j in priced["jobs"] if j["job"] in ("student", "reference_model")]
    assert all(j["epochs"] is not None and j["epochs"] <= 1.0 for j in trained), \
        [(j["method"], j["epochs"]) for j in trained]
    assert _job(priced, "student", "miniplm-s0")["epochs"] > 0.9  # 50 % selection of the pool, read once
    assert not [w for w in priced["warnings"] if "repeats data" in w]


def test_the_paper_data_prep_is_at_least_8_cluster_jobs(priced):
    data_jobs = [j for j in priced["jobs"] if j["job"] in ("corpus_part", "shards_part")]
    assert len(data_jobs) >= 8 and not [j for j in data_jobs if j["slurm"].get("local")]
    assert all(j["slurm"]["slurm_partition"] == "cpu" for j in data_jobs)


def test_the_ledger_shows_miniplm_scoring_beside_the_budget(priced, paper):
    ledger = _job(priced, "student", "miniplm-s0")["ledger"]
    budget = paper["students"]["budget_flops"]
    assert ledger["training"] == pytest.approx(budget, rel=0.01) and ledger["teacher_inference"] == 0
    assert ledger["selection"] > budget  # a 7 B teacher scoring 53 B tokens: more than the student's training
    lsap = _job(priced, "student", "lsap_a0.05-s0")["ledger"]
    assert lsap["teacher_inference"] / budget == pytest.approx(0.144, abs=0.01)  # "14.4 % fewer tokens"


def test_repeated_data_and_unreachable_resume_intervals_are_warned(paper):
    cfg = copy.deepcopy(paper)
    cfg["corpus"]["domains"]["slimpajama"]["sources"][0]["max_docs"] = 12_000_000  # the old paper.yaml
    cfg["training"].update(save_every_steps=10 ** 6, save_every_minutes=None)
    cfg["compute"]["gpus"] = 1  # one GPU: a student is ~186 h, and it saves only at its checkpoint fractions
    cfg["training"]["checkpoint_fractions"] = [1.0]
    warnings = forecast.price(config.validate(cfg))["warnings"]
    assert any(w.startswith("student ce-s0 reads its data 2.") for w in warnings), warnings
    assert any("only the save before the time limit" in w and "save_every_minutes" in w for w in warnings), warnings


def test_the_paper_plan_fits_every_scoring_part_in_one_submission(paper):
    priced = forecast.price(paper)
    parts = [j for j in priced["jobs"] if j["job"] == "selection_part"]
    assert len(parts) == 2 * paper["compute"]["scoring_parts"] == 192
    assert all(j["gpu_hours"] * 60 < j["slurm"]["runtime"] for j in parts)
    assert sum(j["tokens"] for j in parts) == pytest.approx(2 * 52.75e9, rel=0.01)
    assert not any("scoring" in w or "resume" in w for w in priced["warnings"]), priced["warnings"]
    few = copy.deepcopy(paper)
    few["compute"]["scoring_parts"] = 16  # MiniPLM's ≈ 630 GPU-h in 16 parts: ≈ 39 h each
    warnings = forecast.price(config.validate(few))["warnings"]
    assert any(w.startswith("selection miniplm: a scoring part takes ~39") and "compute.scoring_parts to about 66 "
               "(now 16)" in w for w in warnings), warnings
    assert not any(w.startswith("selection salt_ds") for w in warnings), warnings  # ≈ 2.2 h parts fit


def test_the_cli_prints_json_and_the_table():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "lsap", "plan", "--config", str(PAPER), "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)["jobs"]
    assert {"job", "method", "tokens", "flops", "epochs", "gpu_hours", "memory_gb", "slurm"} <= set(rows[0])
    table = subprocess.run([sys.executable, "-m", "lsap", "plan", "--config", str(PAPER)], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert "| student | ce-s0 | 26.04 |" in table and "from config/hub_models.yaml" in table


def test_a_hub_id_that_is_neither_a_folder_nor_reachable_stops_before_any_job(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "results/paper/corpus/part-000/manifest.json", "--cores",
                           "1", "--configfile", str(PAPER)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "corpus.domains.slimpajama: cerebras/SlimPajama-627B" in proc.stdout + proc.stderr
    assert not (REPO_ROOT / "results" / "paper").exists()  # nothing claimed, nothing run
    assert hub.ids(config.load(PAPER))[0] == ("corpus.domains.slimpajama", "cerebras/SlimPajama-627B")


def _params(spec: dict, vocab: int) -> int:
    return flops.model_flops_per_token(spec, vocab, 64) // 6


def test_small_restores_the_papers_premise():
    """config/small.yaml: a surrogate smaller than the student, pretrained far longer and not
    charged; CE, LSAP (λ = 1 and annealed), KD and the random-target control; four seeds, four
    points per curve."""
    cfg = config.load(REPO_ROOT / "config" / "small.yaml")
    s, sur = cfg["students"], cfg["references"]["surrogate"]
    assert _params(sur["model"], 3072) < _params(s["model"], 4096)
    assert sur["budget_flops"] >= 5 * s["budget_flops"] and s["budget_counts"] == "papers"
    assert len(s["seeds"]) >= 4 and len(cfg["training"]["checkpoint_fractions"]) >= 4
    arms = {(m["objective"], m.get("proposals", "surrogate"), m.get("lambda_schedule", "constant"))
            for m in (cfg["methods"][n] for n in s["methods"])}
    assert arms == {("ce", "surrogate", "constant"), ("lsap", "surrogate", "constant"), ("lsap", "surrogate", "cosine"),
                    ("kd", "surrogate", "constant"), ("lsap", "unigram", "constant")}
    assert s["primary_contrast"] == "lsap_a0.05"
    assert all(r["split"] != "train" for r in cfg["references"].values())


def test_gpu_small_fits_its_minutes_with_the_real_surrogate():
    """config/gpu-small.yaml: SmolLM2-135M (pretrained, registry GGUF) as the surrogate of a student
    in its own tokenizer whose CE run takes >= 800 steps on >= 0.25 tokens per parameter, a ladder
    of >= 3 rungs, three seeds, the random control, and <= 7 GPU-minutes in its own plan."""
    cfg = config.load(REPO_ROOT / "config" / "gpu-small.yaml")
    s = cfg["students"]
    assert s["teachers"]["surrogate"] == {"kind": "pretrained", "name": "smollm2"}
    assert (cfg["tokenizers"]["student"]["kind"], cfg["tokenizers"]["student"]["name"]) == ("pretrained", "smollm2")
    import torch

    from lsap import models

    with torch.device("meta"):   # parameters, the tied embedding counted once (34.2 M)
        n = models.n_params(models.build(s["model"], 49_152, 1024, 0))
    ce = plan.make(cfg, s["budget_flops"], flops.model_flops_per_token(s["model"], 49_152, 1024), 0, 0.0, 1024)
    assert ce.steps >= 800 and ce.steps * ce.global_batch * 1024 >= 0.25 * n
    assert len(cfg["training"]["checkpoint_fractions"]) >= 3 and len(s["seeds"]) >= 3
    assert s["methods"][:2] == ["ce", s["primary_contrast"]]   # the headline comparison runs first
    assert {cfg["methods"][m].get("proposals", "surrogate") for m in s["methods"]} == {"surrogate", "unigram"}
    assert any(src["reader"] == "rst_files" for src in cfg["corpus"]["domains"]["technical"]["sources"])
    minutes = 60 * sum(j.get("gpu_hours") or 0 for j in forecast.price(cfg)["jobs"])
    assert 1 < minutes <= 7


def test_ce_paper_ratio_reads_the_papers_token_gap_over_lsap(priced):
    """gpu-small's `ce_paper_ratio`: CE with (1 + r_paper) x LSAP's tokens, r being the surrogate's
    forward over the student's training FLOPs per token (Qwen3-0.6B over OLMo2-1B in the paper,
    0.169; SmolLM2-135M over the 34 M student here, 1.02), so LSAP against it is the paper's
    comparison at the paper's cost ratio. Recomputed from both configs' models, so a change to
    either model that leaves the config's factor stale fails here."""
    def ratio(jobs, method):
        ledger = _job(jobs, "student", f"{method}-s0")["ledger"]
        return ledger["teacher_inference"] / ledger["training"]

    gpu = config.load(REPO_ROOT / "config" / "gpu-small.yaml")
    small = forecast.price(gpu)
    r_paper, r_here = ratio(priced, "lsap_a0.05"), ratio(small, "lsap_a0.05")
    assert r_paper == pytest.approx(0.169, abs=0.001) and r_here == pytest.approx(1.02, abs=0.01)
    assert gpu["methods"]["ce_paper_ratio"]["budget_factor"] == pytest.approx((1 + r_paper) / (1 + r_here), rel=2e-3)
    tokens = {m: _job(small, "student", f"{m}-s0")["tokens"] for m in ("ce", "lsap_a0.05", "ce_paper_ratio")}
    assert tokens["ce_paper_ratio"] / tokens["lsap_a0.05"] == pytest.approx(1 + r_paper, rel=0.01)
    assert tokens["ce"] / tokens["lsap_a0.05"] == pytest.approx(1 + r_here, rel=0.01)
    # the cache of the two surrogate arms is priced once per seed (one spec, shared)
    assert sum(j["job"] == "targets" for j in small["jobs"]) == len(gpu["students"]["seeds"])


def test_the_paper_plan_prices_its_disk():
    """Every job's outputs on disk: a student's checkpoints (bf16 on GPU, one per checkpoint fraction)
    and two resume generations (fp32 weights + AdamW moments), the shards and the corpus text."""
    cfg = config.load(REPO_ROOT / "config" / "paper.yaml")
    priced = forecast.price(cfg)
    ce = next(j for j in priced["jobs"] if j["job"] == "student" and j["method"] == "ce-s0")
    params = 1_484_916_736  # OLMo-2-0425-1B (tests/training/test_plans.py)
    n_ckpt = len(cfg["training"]["checkpoint_fractions"])
    assert ce["disk_gb"] == pytest.approx(params * (2 * n_ckpt + 24) / 1e9, rel=1e-3)
    shards = [j for j in priced["jobs"] if j["job"] == "shards_part"]
    assert sum(j["disk_gb"] for j in shards) == pytest.approx(sum(j["tokens"] for j in shards) * 4 / 1e9)  # uint32
    assert 1_000 < forecast_table.disk_total(priced) < 3_000  # GB: the run needs ~1.5 TB, which the README states
    assert "Disk: 1.24 TB" in forecast_table.render(priced)
