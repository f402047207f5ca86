import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from lsap import REPO_ROOT, config, models
from lsap.data import shards, vocab
from lsap.data.corpus import iter_documents
from lsap.io import assets

TINY = REPO_ROOT / "config" / "tiny.yaml"
# the run configs shipped in config/ (the other YAML files there describe the schema, assets, hub models)
SHIPPED = sorted(p for p in (REPO_ROOT / "config").glob("*.yaml")
                 if p.name not in ("schema.yaml", "assets.yaml", "hub_models.yaml"))
TOKENIZER_ASSETS = ["tiktoken-cl100k", "whisper-gpt2", "qwen3-tokenizer", "llama3-tokenizer", "smollm2"]


def pytest_collection_modifyitems(config, items):
    """Fast and slow apart by file: a test marked slow or slurm lives in tests/e2e/ (the DAG run
    whole) or in a `*_slow.py` file beside the fast tests of its package, so `pytest` alone never
    opens a file whose tests it mostly skips, and a reader sees which is which from the tree."""
    misplaced = [item.nodeid for item in items
                 if any(item.iter_markers("slow")) or any(item.iter_markers("slurm"))
                 if item.path.parent.name != "e2e" and not item.path.stem.endswith("_slow")]
    if misplaced:
        raise pytest.UsageError("slow tests in a fast file (move them to tests/e2e/ or a *_slow.py file beside it): "
                                + ", ".join(misplaced))


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
    # (tests/e2e/test_slurm_requests.py); its 480 GB training jobs run two at a time on this machine's
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


# ---- the training tests' setup (tests/training/test_train.py and test_train_slow.py) ----
# their student: two layers, hidden 32 (seconds per run on a CPU)
SMALL = {"arch": "olmo2", "hidden": 32, "layers": 2, "heads": 2, "intermediate": 64}


@pytest.fixture(scope="module")
def setup(small_corpus, tiny_cfg, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    texts = [t for _, t in iter_documents(small_corpus, "train")]
    tok_dir = vocab.save(vocab.train_bpe(texts, 400), root / "tok")
    for split in ("train", "validation"):
        shards.write_split(tok_dir, small_corpus, split, root / "shards", seq_len=32, log=lambda *_: None)
    cfg = {**tiny_cfg, "training": {**tiny_cfg["training"], "micro_batch": 4, "grad_accum": 2,
                                    "save_every_steps": 3, "eval_sequences": 8, "lr": 1e-3,
                                    "checkpoint_fractions": [0.25, 0.5, 0.75, 1.0]},
           "students": {**tiny_cfg["students"], "model": SMALL, "primary_contrast": None}}  # tests pick methods
    probe = models.build(SMALL, 400, 32, 0)
    step_flops = models.train_flops_per_token(probe) * 4 * 2 * 32
    cfg["students"]["budget_flops"] = 24.5 * step_flops  # 24 steps
    cfg = config.validate(cfg)
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return root, cfg, tok_dir


@pytest.fixture(scope="module")
def teachers(setup, small_corpus):
    """Stand-in teachers for the DDP tests: small random LMs saved as LSAP's surrogate (its own
    real BPE tokenizer, the Σ∩ tables with the student's) and as SALT's teacher (the student's)."""
    root, _, tok_dir = setup
    texts = [t for _, t in iter_documents(small_corpus, "train")]
    sur_tok = vocab.load(vocab.save(vocab.train_bpe(texts, 300, split_digits=True), root / "sur_tok"))
    vocab.save_translation(root / "translation.npz", vocab.load(tok_dir), sur_tok)
    models.build(SMALL, len(sur_tok), 33, seed=5).save_pretrained(root / "surrogate")
    models.build(SMALL, 400, 33, seed=6).save_pretrained(root / "salt_teacher")
    return {"surrogate": {"kind": "hub", "id": str(root / "surrogate")},
            "salt_teacher": {"kind": "hub", "id": str(root / "salt_teacher")}}
