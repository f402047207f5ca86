"""`make rehearse`: config/paper.yaml, transformed by code (lsap.operations.rehearsal), through the Slurm
profile on a real local Slurm, offline, with stand-ins built from embedded assets."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from test_slurm import FAST_POLL, _submissions

from lsap import REPO_ROOT, config, methods
from lsap.operations import rehearsal

OUT = REPO_ROOT / "results" / "rehearsal"
PAPER = config.load(REPO_ROOT / "config" / "paper.yaml")


@pytest.fixture(scope="module")
def built(tmp_path_factory, fetched):
    return rehearsal.build(REPO_ROOT / "config" / "paper.yaml", tmp_path_factory.mktemp("rehearsal"))


def test_the_rehearsal_keeps_every_structural_choice_of_the_paper(built):
    cfg = config.load(built)
    assert cfg["students"]["methods"] == PAPER["students"]["methods"] and cfg["methods"] == PAPER["methods"]
    assert set(cfg["corpus"]["domains"]) == set(PAPER["corpus"]["domains"])
    assert all(s["reader"] == "hf_dataset" for d in cfg["corpus"]["domains"].values() for s in d["sources"])
    assert cfg["training"]["compile"] is True and cfg["compute"]["gpus"] == 2 and cfg["corpus"]["parts"] >= 2
    assert not any(methods.uses_targets_cache(m) for m in cfg["methods"].values())  # LSAP online, as in the paper
    kinds = [(s["kind"], s.get("id", "")) for s in [*cfg["tokenizers"].values(), *cfg["students"]["teachers"].values(),
                                                    *cfg["analysis"]["table1"]["models"]]]
    assert [k for k, _ in kinds] == [s["kind"] for s in [*PAPER["tokenizers"].values(),
                                                         *PAPER["students"]["teachers"].values(),
                                                         *PAPER["analysis"]["table1"]["models"]]]
    assert all(i.startswith(str(built.parent)) for k, i in kinds if k == "hub")  # every hub id a local stand-in


@pytest.mark.slurm
def test_the_paper_dag_runs_offline_through_slurm(slurm_cluster, built, tmp_path):
    shutil.rmtree(OUT, ignore_errors=True)
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "--configfile", str(built),
                           *FAST_POLL], cwd=REPO_ROOT, capture_output=True, text=True, timeout=2700,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    log = proc.stdout + proc.stderr
    (tmp_path / "snakemake.log").write_text(log)
    assert proc.returncode == 0, log[-6000:]
    assert "Error in rule" not in log, log[log.find("Error in rule"):][:6000]
    print(f"rehearsal: {time.time() - started:.0f} s")
    by_rule = {}
    for rule, jobid, _ in _submissions(log):
        by_rule.setdefault(rule, []).append(jobid)
    cfg = yaml.safe_load(built.read_text())
    n = len(cfg["students"]["methods"]) * len(cfg["students"]["seeds"])
    assert len(by_rule["corpus_part"]) == len(by_rule["shards_part"]) == cfg["corpus"]["parts"]  # scattered
    assert len(by_rule["student"]) == n and len(by_rule["evaluate"]) == n
    assert not {"corpus", "shards", "tokenizer"} & set(by_rule)  # the gathers and downloads stay local
    for name in cfg["students"]["methods"]:
        summary = json.loads((OUT / "students" / f"{name}-s0" / "summary.json").read_text())
        assert summary["steps"] > 0 and summary["final_val_loss"] is not None
    ddp = (OUT / "logs" / "students" / "ce-s0.log").read_text()
    assert "on 2 processes" in ddp, ddp[-2000:]  # DDP on gloo under torchrun
    for t in ("table2", "head_to_head", "table1"):
        assert (OUT / "report" / "tables" / f"{t}.csv").stat().st_size > 0
    shutil.rmtree(OUT, ignore_errors=True)
