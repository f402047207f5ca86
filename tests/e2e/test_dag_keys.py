"""On a finished tiny run: a config edit plans exactly the jobs that read what changed, and the
results move to another checkout (another path, another venv) with nothing to redo."""

import copy
import os
import shutil
import subprocess
import sys
import sysconfig
from collections import Counter

import pytest
import yaml
from conftest import E2E_RUN, planned_jobs

from lsap import REPO_ROOT, config, keys
from lsap.report.writers import read_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(dag_run, tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["run"] = E2E_RUN
    return config.validate(cfg)


def _plan_with(cfg, tmp_path):
    # named like the file that made the run (config/tiny.yaml): results/<run>/ belongs to one config
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Counter(rule for rule, _ in planned_jobs("--configfile", str(path)))


def _edit(cfg, fn):
    cfg = copy.deepcopy(cfg)
    fn(cfg)
    return config.validate(cfg)


N = 10  # student runs of the tiny config (10 methods × 1 seed)
SCORING = {"selection_part": 4, "selection": 2}  # 2 scoring specs × compute.scoring_parts 2, and their gathers
REST = {"report": 1, "notebook": 1}
EDITS = {
    "budget": (lambda c: c["students"].update(budget_flops=2.5e12),
               {"student": N, "targets": 1, **SCORING, "evaluate": N, **REST}),
    "eval-limit": (lambda c: c["evaluation"].update(limit=5), {"evaluate": N, **REST}),
    "alpha": (lambda c: c["methods"]["lsap_a0.05"].update(alpha=0.07),
              {"student": 1, "evaluate": 1, "surrogate_lines": 1, **REST}),
    "seed": (lambda c: c["students"].update(seeds=[0, 1]), {"student": N, "targets": 1, "evaluate": N, **REST}),
    "lr": (lambda c: c["training"].update(lr=5e-3),
           {"reference_model": 4, "student": N, "targets": 1, **SCORING, "table1": 1, "surrogate_lines": 1, "evaluate": N,
            **REST}),
    "splits": (lambda c: c["corpus"].update(splits={"validation": 0.06, "reference": 0.10, "teacher": 0.30}),
               {"corpus_part": 1, "corpus": 1, "tokenizer": 2, "shards_part": 2, "shards": 2, "translation": 1,
                "overlap": 1, "table1": 1, "heldout": 1, "reference_lines": 1, "surrogate_lines": 1,
                "reference_model": 4, "student": N, "targets": 1, **SCORING, "evaluate": N, **REST}),
}


def test_a_finished_run_plans_nothing(dag_run):
    assert planned_jobs("--config", f"run={E2E_RUN}") == []


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_plans_exactly_the_jobs_that_read_it(finished, edit, tmp_path):
    fn, expected = EDITS[edit]
    assert _plan_with(_edit(finished, fn), tmp_path) == Counter(expected)


def test_an_edit_plans_the_right_instances(finished, tmp_path):
    """The alpha edit reruns that method's student only; the new seed's jobs are all seed 1."""
    alpha = _edit(finished, EDITS["alpha"][0])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(alpha, sort_keys=False))  # sorted, the domains' order (the corpus key) would change
    assert ("student", (("method", "lsap_a0.05"), ("seed", "0"))) in planned_jobs("--configfile", str(path))
    assert keys.targets_id(alpha, "lsap_a0.05") == keys.targets_id(finished, "lsap_a0.05")  # α only filters
    seed = _edit(finished, EDITS["seed"][0])
    path.write_text(yaml.safe_dump(seed, sort_keys=False))
    assert all(dict(wc).get("seed", "1") == "1" for r, wc in planned_jobs("--configfile", str(path))
               if r in ("student", "targets"))


def test_a_deleted_student_is_rebuilt_by_make_run_while_a_second_invocation_changes_nothing(dag_run, finished,
                                                                                           tmp_path):
    """Delete one student's outputs and rerun `make run`; while it runs, a second snakemake with
    another evaluation limit is refused by the lock and leaves the resolved config untouched."""
    import json
    import time

    out, _ = dag_run
    shutil.rmtree(out / "students" / "ce-s0")
    resolved = (out / "config.yaml").read_bytes()
    path = tmp_path / "tiny.yaml"  # results/<run>/ belongs to config/tiny.yaml's stem
    path.write_text(yaml.safe_dump(finished, sort_keys=False))
    assert Counter(rule for rule, _ in planned_jobs("--configfile", str(path))) == \
        Counter({"student": 1, "evaluate": 1, **REST})
    venv = os.path.dirname(os.path.dirname(sys.executable))
    # -o: this environment is set up; make must not reinstall it (from this checkout) first
    make = subprocess.Popen(["make", "-o", f"{venv}/.installed", "run", f"CONFIG={path}", f"VENV={venv}"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        locks = REPO_ROOT / ".snakemake" / "locks"
        deadline = time.monotonic() + 120
        while not (locks.is_dir() and any(locks.iterdir())) and make.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert make.poll() is None, "make run ended before the second invocation"
        other = tmp_path / "other" / "tiny.yaml"
        other.parent.mkdir()
        other.write_text(yaml.safe_dump(_edit(finished, EDITS["eval-limit"][0]), sort_keys=False))
        second = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", str(other)],
                                cwd=REPO_ROOT, capture_output=True, text=True)
        assert second.returncode != 0 and "lock" in (second.stdout + second.stderr).lower()
        assert (out / "config.yaml").read_bytes() == resolved
    finally:
        log, _ = make.communicate(timeout=1800)
    assert make.returncode == 0, log[-4000:]
    assert (out / "config.yaml").read_bytes() == resolved
    rebuilt = json.loads((out / "students" / "ce-s0" / "summary.json").read_text())
    first = json.loads((out / "students" / "ce-s0" / "log.jsonl").read_text().splitlines()[0])
    # it trained (tiny's smoke budget ends near the unigram entropy, so below its first step's loss)
    assert rebuilt["steps"] > 0 and rebuilt["final_val_loss"] < first["ce"]
    evaluated = json.loads((out / "eval" / "ce-s0" / "frac-1.00.json").read_text())
    assert {b["n"] for t, b in evaluated["benchmarks"].items() if "n" in b and not t.startswith("lsap_")} == \
        {finished["evaluation"]["limit"]}   # the benchmarks' limit (the probes hold their own item count)
    assert planned_jobs("--configfile", str(path)) == []


def test_another_config_beside_a_finished_run_leaves_it_with_nothing_to_do(dag_run, finished, tmp_path):
    """A second config (its own run and file name) runs its data stages in the same checkout,
    fetching and verifying the shared assets: the finished tiny run still plans nothing."""
    other = copy.deepcopy(finished)
    other["run"] = "side-by-side"
    other["corpus"]["max_docs_per_domain"] = 40
    path = tmp_path / "side-by-side.yaml"
    path.write_text(yaml.safe_dump(other, sort_keys=False))
    target = "results/side-by-side/shards/student/train.json"
    try:
        # the target first: --configfile takes every value after it
        proc = subprocess.run([sys.executable, "-m", "snakemake", target, "--cores", "2", "--configfile", str(path)],
                              cwd=REPO_ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (REPO_ROOT / target).exists()
        assert planned_jobs("--config", f"run={E2E_RUN}") == []
    finally:
        shutil.rmtree(REPO_ROOT / "results" / "side-by-side", ignore_errors=True)


def test_results_move_to_another_checkout(dag_run, tmp_path):
    """results/ + resources/ copied into a checkout elsewhere, run by another interpreter path:
    nothing to redo, and `make tables` rebuilds paper_tables/<run>/ and figures/<run>/ from them."""
    other = tmp_path / "elsewhere" / "checkout"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (REPO_ROOT / f).is_file() and not f.startswith(("paper_tables/", "figures/")):
            (other / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / f, other / f, follow_symlinks=False)
    for d in (f"results/{E2E_RUN}", "resources"):  # hard links: a copy that keeps the mtimes, instantly
        (other / d).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(REPO_ROOT / d), str(other / d)], check=True)
    venv = tmp_path / "another-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this environment's packages, but not its editable lsap: the checkout's own src/ comes first
    with open(os.path.join(site, "parent-env.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    env = {**os.environ, "PYTHONPATH": str(other / "src")}
    python = str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import lsap; print(lsap.REPO_ROOT)"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert where == str(other)
    assert planned_jobs("--config", f"run={E2E_RUN}", cwd=other, python=python, env=env) == []
    cfg_path = other / "tiny-e2e.yaml"
    cfg_path.write_text(yaml.safe_dump({**config.load(REPO_ROOT / "config" / "tiny.yaml"), "run": E2E_RUN},
                                       sort_keys=False))  # the domains' order is the tables' column order
    (venv / ".installed").touch()  # the Makefile's install stamp: this venv is set up
    proc = subprocess.run(["make", "tables", f"VENV={venv}", f"CONFIG={cfg_path}"], cwd=other, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for t in ("table2", "head_to_head", "paper_vs_replication", "table1", "tokenizer_overlap"):
        ours = read_table(other / "paper_tables" / E2E_RUN / f"{t}.csv")
        assert ours.equals(read_table(dag_run[0] / "report" / "tables" / f"{t}.csv")), t
    for f in ("figure2_score_vs_flops", "bpb_vs_flops", "targets_vs_alpha", "table1_counts"):
        assert (other / "figures" / E2E_RUN / f"{f}.png").stat().st_size > 10_000
    assert planned_jobs("--config", f"run={E2E_RUN}", cwd=other, python=python, env=env) == []
