"""`snakemake --profile slurm` against a real single-node Slurm (tests/slurm_cluster.sh brings it up).

A: part of the tiny DAG (localrules, a CPU-partition job, a GPU-partition training job) goes through
sbatch. B: a training job `scancel`ed mid-run is resubmitted by Snakemake (the profile's `retries`)
and continues from its resume.pt. Both run from the repository root exactly as a user would, with
a small config (tiny.yaml, smaller budgets, `compute.gpus: 1`) in a run folder of their own.
"""

import copy
import json
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from lsap import REPO_ROOT

RUN = "slurm-test"
OUT = REPO_ROOT / "results" / RUN
PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
# only how often Snakemake asks Slurm (the profile's 20 s suits a cluster); everything else as written
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "2"]


def _clean():
    for d in (OUT, REPO_ROOT / "paper_tables" / RUN, REPO_ROOT / "figures" / RUN):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(slurm_cluster):
    _clean()
    yield
    _clean()


@pytest.fixture(scope="module")
def configfile(tmp_path_factory, tiny_cfg):
    """tiny.yaml with one GPU per job (the fake GRES), a capped corpus and small budgets: reference A
    ~10 steps; reference B ~35 steps with resume.pt every 5, long enough to be cancelled mid-run."""
    cfg = copy.deepcopy(tiny_cfg)
    cfg["run"] = RUN
    cfg.setdefault("compute", {})["gpus"] = 1
    cfg["corpus"]["max_docs_per_domain"] = 400
    cfg["corpus"]["parts"] = 2  # the data prep scattered over cluster jobs, gathered locally
    cfg["training"]["save_every_steps"] = 5
    refs = cfg["references"]
    a = "surrogate" if "surrogate" in refs else next(iter(refs))
    b = next(n for n, r in refs.items() if n != a and r["tokenizer"] == "student")
    for name, ref in refs.items():
        ref["budget_flops"] = 1.0e12 if name == b else 2.5e11
    path = tmp_path_factory.mktemp("slurm") / "slurm-test.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, a, b


def _snakemake(configfile, *targets):
    # --profile slurm resolves to ./slurm (-> workflow/profiles/slurm) in the repository root
    return [sys.executable, "-m", "snakemake", "--profile", "slurm", "--configfile", str(configfile),
            *FAST_POLL, *targets]


def _submissions(text):
    """(snakemake job id, Slurm job id, Slurm log) for every sbatch submission, with the job's rule."""
    rules = {m.group(2): m.group(1) for m in re.finditer(r"^rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$",
                                                         text, re.M)}
    rules.update({m.group(2): m.group(1) for m in re.finditer(r"^localrule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$",
                                                              text, re.M)})
    return [(rules.get(j), int(s), REPO_ROOT / log) for j, s, log in SUBMITTED.findall(text)]


def _scontrol(jobid):
    out = subprocess.run(["scontrol", "show", "job", str(jobid)], capture_output=True, text=True).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def test_profile_puts_every_gpu_rule_on_the_gpu_partition():
    """Every rule declaring `resources: gpu=...` has its set-resources entry on a GPU partition."""
    gpu_rules = set()
    for smk in (REPO_ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), re.M | re.S):
            if re.search(r"^\s+resources:\n(?:\s{8,}.*\n)*?\s{8,}gpu\s*=", body, re.M):
                gpu_rules.add(name)
    assert {"reference_model", "student", "table1"} <= gpu_rules
    profile = yaml.safe_load(PROFILE.read_text())
    assert (REPO_ROOT / "slurm").resolve() == PROFILE.parent
    missing = {r for r in gpu_rules if profile["set-resources"].get(r, {}).get("slurm_partition")
               in (None, profile["default-resources"]["slurm_partition"])}
    assert not missing, f"GPU rules without a GPU partition in {PROFILE.relative_to(REPO_ROOT)}: {sorted(missing)}"


@pytest.mark.slurm
def test_dag_runs_through_sbatch(cluster, configfile, fetched, tmp_path):
    path, a, _ = configfile
    targets = [f"results/{RUN}/references/{a}/summary.json", f"results/{RUN}/shards/student/train.json",
               f"results/{RUN}/vocab/translation.npz"]
    started = time.time()
    proc = subprocess.run(_snakemake(path, *targets), cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500)
    log = proc.stdout + proc.stderr
    (tmp_path / "snakemake.log").write_text(log)
    assert proc.returncode == 0, log[-6000:]
    # a job that failed and succeeded when retried is still a failure here (the logs say why)
    assert "Error in rule" not in log, log[log.find("Error in rule"):][:6000]
    summary = json.loads((OUT / "references" / a / "summary.json").read_text())
    assert summary["steps"] > 0
    assert (OUT / "vocab" / "translation.npz").stat().st_size > 0
    subs = _submissions(log)
    by_rule = {}
    for rule, jobid, slurm_log in subs:
        by_rule.setdefault(rule, []).append(jobid)
        # the profile keeps successful jobs' logs (job ids restart with each fresh cluster: this run's)
        assert slurm_log.is_file() and slurm_log.stat().st_mtime >= started - 1, slurm_log
        assert f"{jobid}.log" == slurm_log.name
    # the GPU rule and the data parts went through sbatch (2 corpus parts, 2 parts x 2 tokenizer
    # roles); the localrules (downloads, gathers) did not
    assert len(by_rule.get("reference_model", [])) == 1, by_rule
    assert len(by_rule.get("corpus_part", [])) == 2 and len(by_rule.get("shards_part", [])) == 4, by_rule
    assert not {"asset", "corpus", "shards", "tokenizer", "translation"} & set(by_rule), by_rule
    for rule, partition, gres in (("reference_model", "gpu", "gpu:1"), ("corpus_part", "cpu", None),
                                  ("shards_part", "cpu", None)):
        for jobid in by_rule[rule]:
            job = _scontrol(jobid)  # completed jobs stay visible for MinJobAge (300 s)
            assert job.get("JobState") == "COMPLETED" and job.get("Partition") == partition, job
            if gres:
                assert gres in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
    print("\n".join(f"{rule}: SLURM jobid {jobid} -> {slurm_log.relative_to(REPO_ROOT)}" for rule, jobid, slurm_log in subs))


@pytest.mark.slurm
def test_cancelled_training_job_resumes_from_checkpoint(cluster, configfile, fetched, tmp_path):
    path, _, b = configfile
    ref = OUT / "references" / b
    shutil.rmtree(ref, ignore_errors=True)
    stream = tmp_path / "snakemake.log"
    with open(stream, "w") as fh:
        proc = subprocess.Popen(_snakemake(path, f"results/{RUN}/references/{b}/summary.json"), cwd=REPO_ROOT,
                                stdout=fh, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 900
        while not (ref / "resume.pt").exists():  # written every save_every_steps (5 here) steps
            assert proc.poll() is None, stream.read_text()[-6000:]
            assert time.monotonic() < deadline, "no resume.pt after 900 s"
            time.sleep(0.5)
        queue = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True).stdout
        running = [int(i) for i, comment in (line.split("|", 1) for line in queue.splitlines())
                   if comment == f"rule_reference_model_wildcards_{b}"]   # the plugin's --comment
        assert len(running) == 1, f"no running Slurm job for reference {b}: {queue!r}"
        jobid = running[0]
        job = _scontrol(jobid)
        assert job["Partition"] == "gpu" and "gpu:1" in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
        subprocess.run(["scancel", str(jobid)], check=True)
        assert proc.wait(timeout=900) == 0, stream.read_text()[-6000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    log = stream.read_text()
    assert f"SLURM-job '{jobid}' failed, SLURM status is: 'CANCELLED'" in log
    retried = [s for rule, s, _ in _submissions(log) if rule == "reference_model"]
    assert retried[0] == jobid and len(retried) == 2, retried   # resubmitted once, as a new Slurm job
    m = re.search(r"\[train\] resuming \S+ at step (\d+)/(\d+)", (OUT / "logs" / f"references_{b}.log").read_text())
    assert m, (OUT / "logs" / f"references_{b}.log").read_text()[-3000:]
    step, total = int(m.group(1)), int(m.group(2))
    assert 0 < step < total
    summary = json.loads((ref / "summary.json").read_text())
    assert summary["steps"] == total
    print(f"\n{b}: SLURM jobid {jobid} cancelled at step >= {step}/{total}; resumed as jobid {retried[1]}")


@pytest.mark.slurm
def test_a_killed_controller_keeps_what_its_jobs_finished(cluster, configfile, fetched, tmp_path):
    """N4. Snakemake killed while a training job runs. A plain restart then would plan that job
    again (its output is marked incomplete: `rerun-incomplete` deletes it and submits it a second
    time beside the running one; shown here while the job is held by `scontrol suspend`), and the
    directory stays locked. `lsap recover` refuses while the job is queued, naming it; once it has
    finished on its own (its job-side Snakemake clears the marker) recover unlocks, and the restart
    runs nothing: the output is the same file."""
    path, _, b = configfile
    ref = OUT / "references" / b
    shutil.rmtree(ref, ignore_errors=True)
    target = f"results/{RUN}/references/{b}/summary.json"
    with open(tmp_path / "snakemake.log", "w") as fh:
        proc = subprocess.Popen(_snakemake(path, target), cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900
        while not (ref / "resume.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "snakemake.log").read_text()[-6000:]
            time.sleep(0.5)
    finally:
        proc.kill()  # SIGKILL: no cleanup, the Slurm job runs on
        proc.wait()
    try:
        jobid = str(next(s for r, s, _ in _submissions((tmp_path / "snakemake.log").read_text()) if r == "reference_model"))
        subprocess.run(["scontrol", "suspend", jobid], check=True)  # held: it cannot finish before the checks below

        def planned():
            dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", target, "--profile", "slurm", "--configfile",
                                  str(path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
            assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
            return re.findall(r"^(?:local)?rule (\w+):", dry.stdout, re.M)

        recover = [sys.executable, "-m", "lsap", "recover", "--config", str(path)]
        try:
            assert "reference_model" in planned()  # the trap: a restart now would run the job a second time
            early = subprocess.run(recover, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
            assert early.returncode != 0 and f"still queued or running: {jobid}" in early.stderr, early.stdout + early.stderr
        finally:
            subprocess.run(["scontrol", "resume", jobid], check=True)
        deadline = time.monotonic() + 900
        while subprocess.run(["squeue", "-h", "-j", jobid], capture_output=True, text=True).stdout.strip():
            assert time.monotonic() < deadline, f"Slurm job {jobid} still running after 900 s"
            time.sleep(1)
        finished = (ref / "summary.json").stat().st_mtime_ns
        done = subprocess.run(recover, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "unlocked" in done.stdout, done.stdout + done.stderr
        assert planned() == []
        restart = subprocess.run(_snakemake(path, target), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert restart.returncode == 0 and "Nothing to be done" in restart.stdout + restart.stderr, restart.stderr[-3000:]
        assert (ref / "summary.json").stat().st_mtime_ns == finished
    finally:  # a failure here must not leave the checkout locked for the next test or run
        subprocess.run([sys.executable, "-m", "snakemake", "--unlock", "--configfile", str(path)], cwd=REPO_ROOT,
                       capture_output=True)
