"""The device pack (lsap.operations.devpack): calls under the transfer limit, chunks checked when reassembled,
and the GPU check rehearsed from the pack alone, offline, in the GPU machine's package set."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from lsap import REPO_ROOT, config
from lsap.operations import device_limits, devpack, sweep_results
from lsap.report.writers import read_table

MACHINE = devpack.machine_packages(REPO_ROOT / "bench" / "device" / "h200-pip-list.txt")


def _pack(tmp_path, limit):
    """Two archives of real repository files, cut at a small limit: the mechanism, at any size."""
    sources = sorted((REPO_ROOT / "src" / "lsap").rglob("*.py"))
    bench = devpack.write_archive({str(p.relative_to(REPO_ROOT)): p for p in sources}, tmp_path / "bench.tar", "gz")
    sweep = devpack.write_archive({"config/schema.yaml": REPO_ROOT / "config" / "schema.yaml"}, tmp_path / "sweep.tar", "xz")
    return devpack.split({"bench": bench, "sweep": sweep}, tmp_path / "pack", limit)


def test_calls_hold_at_most_the_limit_and_the_parts_reassemble(tmp_path):
    m = _pack(tmp_path, limit=16_384)
    assert len(m["calls"]) >= 3
    for call in m["calls"]:
        files = list((tmp_path / "pack" / call["folder"]).glob("*.tar.*"))
        assert sum(f.stat().st_size for f in files) == call["bytes"] <= 16_384
    repo = tmp_path / "repo"
    repo.mkdir()
    devpack.unpack(tmp_path / "pack", "bench", repo)
    devpack.unpack(tmp_path / "pack", "sweep", repo)
    assert (repo / "src/lsap/training/loop.py").read_bytes() == (REPO_ROOT / "src/lsap/training/loop.py").read_bytes()
    assert (repo / "config/schema.yaml").read_bytes() == (REPO_ROOT / "config/schema.yaml").read_bytes()


def test_a_missing_call_is_named_with_the_fix(tmp_path):
    m = _pack(tmp_path, limit=16_384)
    shutil.rmtree(tmp_path / "pack" / m["calls"][1]["folder"])
    with pytest.raises(devpack.PackError, match=r"call2/bench\.tar\.\d+ is missing: carry call2"):
        devpack.unpack(tmp_path / "pack", "bench", tmp_path)


def test_a_damaged_chunk_is_refused(tmp_path):
    m = _pack(tmp_path, limit=16_384)
    chunk = tmp_path / "pack" / m["parts"]["bench"]["chunks"][0]["file"]
    data = bytearray(chunk.read_bytes())
    data[100] ^= 1
    chunk.write_bytes(bytes(data))
    with pytest.raises(devpack.PackError, match="does not match its sha256"):
        devpack.unpack(tmp_path / "pack", "bench", tmp_path)


def test_the_unpacker_needs_nothing_but_the_standard_library():
    """It runs on the machine before any wheel is installed: importing it must not pull in a package."""
    code = ("import sys, lsap.operations.devpack; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'torch', 'yaml', 'packaging', 'jsonschema')); sys.exit(', '.join(bad) or None)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO_ROOT / "src")})
    assert proc.returncode == 0, proc.stderr


def test_wheels_cover_what_the_sweep_needs_and_the_machine_lacks_and_no_snakemake():
    ship = devpack.to_ship(MACHINE)
    # absent there, and read by `python -m lsap sweep` (lm-eval runs the probe; the config's schema)
    assert {"lm-eval", "datasets", "jsonschema", "gguf", "rpds-py"} <= set(ship)
    # the sweep is one process: no snakemake, nor what only it needs (pulp, its packaging<26)
    assert not {"snakemake", "pulp", "packaging", "sqlalchemy"} & set(ship)
    # there at a version every package of ours accepts: the machine's own is used
    assert not {"transformers", "tokenizers", "numpy", "torch", "pyarrow"} & set(ship)
    side = devpack.machine_side(MACHINE)
    assert side["transformers"] == "5.17.0" and not set(side) & set(ship)


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
    gpu = config.load(REPO_ROOT / "config" / "gpu-small.yaml")["students"]
    pvr = read_table(tables / "paper_vs_replication.csv")
    assert (pvr.seeds == len(gpu["seeds"])).all()
    h2h = read_table(tables / "head_to_head.csv")
    assert len(h2h) == len(gpu["methods"]) and "bpb technical" in h2h
    assert (figures / "bpb_vs_flops.png").stat().st_size > 10_000
    jobs = json.loads((out / "sweep.json").read_text())["job_seconds"]
    # the sweep ran the GPU jobs only (the CPU stages came in the pack), every student and evaluation
    # in the one `lsap sweep` process, which writes their seconds where the DAG's jobs would
    n = len(gpu["methods"]) * len(gpu["seeds"])
    assert sum(j.startswith("students/") for j in jobs) == sum(j.startswith("evaluate_") for j in jobs) == n
    assert not any(j.startswith(("corpus", "shards")) for j in jobs)
    # the log's lines are stamped (lsap.io.progress): "<date> <time> [sweep] ce seed 0: trained and evaluated"
    ran = re.findall(r"\[sweep\] (.+): trained and evaluated$", (out / "sweep.log").read_text(), re.M)
    assert ran[:2] == ["ce seed 0", f"{gpu['primary_contrast']} seed 0"] and len(ran) == n   # headline first
