"""bench/gpu_check.sh: refuses bad input before any work; --cpu-smoke runs the GPU check's code
(bench at CPU shapes, config/gpu-small.yaml through lsap.smoke: SmolLM2 as the real surrogate
through Σ∩, every method, two seeds, the report) end to end on CPU."""

import json
import subprocess

import pytest
import torch
import yaml

from lsap import REPO_ROOT
from lsap.report import read_table

SCRIPT = REPO_ROOT / "bench" / "gpu_check.sh"


def _run(*args, timeout=600):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def test_an_unwritable_out_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = _run("--out", str(blocker / "sub"), "--cpu-smoke")
    assert proc.returncode == 2 and "is not a writable directory" in proc.stderr
    assert not (tmp_path / "gpu_check.json").exists()
    proc = _run("--cpu-smoke")
    assert proc.returncode == 2 and "--out DIR is required" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_no_cuda_without_cpu_smoke_is_refused(tmp_path):
    proc = _run("--out", str(tmp_path))
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "--cpu-smoke" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cpu_smoke_runs_the_gpu_check_end_to_end(tmp_path):
    proc = _run("--out", str(tmp_path), "--cpu-smoke", "--minutes", "15", timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "sweep.log").read_text()[-3000:]
    status = json.loads((tmp_path / "gpu_check.json").read_text())
    assert status["cpu_smoke"] and {p["status"] for p in status["parts"].values()} == {"ok"}
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["complete"] and {"ce", "lsap_online", "lsap_cached", "kd", "salt"} <= set(bench["steps"])
    assert 0 < bench["steps"]["flops_bound_lsap_over_ce"] < 1
    tables = tmp_path / "paper_tables" / "gpu-small-cpu-smoke"
    pvr = read_table(tables / "paper_vs_replication.csv")
    assert (pvr.seeds == 2).all() and pvr["verdict (bpb)"].isin(["better", "worse", "inconclusive"]).all()
    # the surrogate is the real SmolLM2 read through Σ∩ of GPT-2's tokenizer: partial, high
    ov = read_table(tables / "tokenizer_overlap.csv")
    row = ov[(ov.base == "gpt2") & (ov.surrogate == "smollm2")].iloc[0]
    assert int(row["|Σ∩|"]) == 36_960
    h2h = read_table(tables / "head_to_head.csv")
    assert len(h2h) == 8 and "bpb technical" in h2h  # every method; the Debian text is a domain
    assert (tmp_path / "figures" / "gpu-small-cpu-smoke" / "bpb_vs_flops.png").stat().st_size > 10_000
    # every student's training and evaluation job has its wall-clock in sweep.json
    students = yaml.safe_load((REPO_ROOT / "config" / "gpu-small.yaml").read_text())["students"]
    runs = {f"{m}-s{seed}" for m in students["methods"] for seed in students["seeds"]}
    jobs = json.loads((tmp_path / "sweep.json").read_text())["job_seconds"]
    assert len(runs) == 16 and {f"students/{r}" for r in runs} | {f"evaluate_{r}" for r in runs} <= set(jobs)


@pytest.mark.slow
def test_a_check_stopped_at_its_time_limit_keeps_the_json_of_what_finished(tmp_path):
    """One minute in all: the bench gets a quarter of it and is stopped mid-way; its JSON holds the
    parts it measured, and gpu_check.json says which part timed out."""
    proc = _run("--out", str(tmp_path), "--cpu-smoke", "--minutes", "1", timeout=600)
    assert proc.returncode == 1
    status = json.loads((tmp_path / "gpu_check.json").read_text())
    assert status["parts"]["bench"]["status"] == "timeout" and "sweep" in status["parts"]
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["complete"] is False and bench["shapes"] == "cpu"  # what it measured before the limit
