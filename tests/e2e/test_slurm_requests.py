"""Every Slurm request of the paper run fits a standard 8-GPU node (96 CPUs, 8 GPUs, 1 TB).

The requests are the ones the run would make: each job's resources as `snakemake -n --profile
slurm --configfile config/paper.yaml` resolves them, turned into the sbatch call by the Slurm
plugin's own functions (`get_submit_command`, `set_gres_string`), then `sbatch --test-only`
against the local Slurm of tests/slurm_cluster.sh, configured as that node: the controller
answers whether the job could ever be placed, without running it.
"""

import re
import shlex
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from conftest import JOB_HEADER

from lsap import REPO_ROOT

pytestmark = pytest.mark.slurm

PROFILE = yaml.safe_load((REPO_ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())


def local_rules() -> set[str]:
    """The Snakefile's `localrules:` (run where snakemake runs, never submitted); a dry run does not say."""
    block = re.search(r"^localrules:\n((?:    .*\n)+)", (REPO_ROOT / "Snakefile").read_text(), re.M).group(1)
    return set(re.findall(r"(\w+),", re.sub(r"#.*", "", block)))


class _Resources(dict):
    """A job's resources as the plugin reads them (`.get` and attribute access)."""

    def __getattr__(self, name):
        return self[name]


def _paper_jobs() -> list[tuple[str, SimpleNamespace]]:
    """(rule, job) of every cluster job of the paper run's dry run, with its resolved resources."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--profile", "slurm", "--configfile",
                           "config/paper.yaml"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs, rule, job = [], None, None
    for line in proc.stdout.splitlines():
        if m := JOB_HEADER.match(line):
            rule, job = m.group(1), SimpleNamespace(threads=1, resources=_Resources())
            if rule not in LOCAL:
                jobs.append((rule, job))
        elif job is not None and line.strip().startswith("threads:"):
            job.threads = int(line.split(":")[1])
        elif job is not None and line.strip().startswith("resources:"):
            for item in line.split(":", 1)[1].split(", "):
                k, v = item.strip().split("=", 1)
                job.resources[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
    return jobs


LOCAL = local_rules()


def test_the_plan_prices_local_rules_as_the_snakefile_declares_them():
    from lsap.operations import forecast

    assert {"all", "asset", "selection", "report"} <= LOCAL
    for rule in LOCAL - {"all", "asset"}:
        assert forecast.slurm_resources(rule, {}, PROFILE) == {"local": True}, rule


def _sbatch_test_only(job) -> subprocess.CompletedProcess:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    settings = SimpleNamespace(requeue=PROFILE.get("slurm-requeue", False), no_requeue=False, qos=None,
                               reservation=None)
    params = {"run_uuid": "lsap-test-only", "slurm_logfile": "/dev/null", "comment_str": "test-only", "account": "",
              "partition": f"-p {job.resources['slurm_partition']}", "workdir": str(REPO_ROOT)}
    call = get_submit_command(job, params, settings=settings) + set_gres_string(job)
    assert call.startswith("sbatch --parsable ")
    args = shlex.split(call.replace("sbatch --parsable ", "sbatch --test-only ", 1)) + ["--wrap", "true"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_every_paper_job_is_accepted_by_a_standard_8_gpu_node(slurm_cluster):
    jobs = _paper_jobs()
    rules = {rule for rule, _ in jobs}
    assert rules == {"corpus_part", "shards_part", "heldout", "reference_model", "student", "selection_part", "evaluate",
                     "table1", "reference_lines", "surrogate_lines"}
    seen = {}
    for rule, job in jobs:  # one sbatch per distinct request (96 scoring parts ask the same)
        key = (rule, tuple(sorted(job.resources.items())), job.threads)
        if key not in seen:
            seen[key] = _sbatch_test_only(job)
    refused = {k[0]: p.stderr.strip() for k, p in seen.items() if p.returncode != 0}
    assert not refused, refused
    for (rule, res, _), p in seen.items():
        assert "to start at" in p.stderr, (rule, p.stderr)
        if dict(res).get("gpu", 0) == 8:  # a training job: the whole node
            assert "using 64 processors" in p.stderr, (rule, p.stderr)
    print(f"\n{len(jobs)} jobs, {len(seen)} distinct requests, all accepted:")
    for (rule, res, _), p in seen.items():
        print(f"  {rule}: gpu={dict(res).get('gpu', 0)} mem_mb={dict(res).get('mem_mb')} -> {p.stderr.strip()}")


def test_a_request_beyond_the_node_is_refused(slurm_cluster):
    """The check can fail: one GPU more than a node has, or 2 TB, is refused by the same call."""
    student = next(job for rule, job in _paper_jobs() if rule == "student")
    for change in ({"gpu": 9}, {"mem_mb": 2_000_000}):
        job = SimpleNamespace(threads=student.threads, resources=_Resources({**student.resources, **change}))
        p = _sbatch_test_only(job)
        assert p.returncode != 0 and "configuration is not available" in p.stderr, (change, p.stderr)


def test_a_job_reads_its_own_time_left_from_slurm(slurm_cluster, tmp_path):
    """The trainer's deadline: a job submitted with a 7-minute limit reads 6-7 minutes left."""
    out = tmp_path / "left.txt"
    code = f"from lsap.training.resume import slurm_time_left; open({str(out)!r}, 'w').write(str(slurm_time_left()))"
    p = subprocess.run(["sbatch", "--parsable", "-p", "cpu", "-t", "7", "--mem", "1000", "-o", str(tmp_path / "log"),
                        "--wrap", f"{sys.executable} -c \"{code}\""], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    import time

    for _ in range(300):
        if out.exists() and out.read_text():
            break
        time.sleep(0.2)
    left = float(out.read_text())
    assert 6 * 60 <= left <= 7 * 60, left
