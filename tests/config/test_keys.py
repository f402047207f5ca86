"""Job keys (lsap.keys), the run layout's guards (lsap.io.layout) and the CLI's key check."""

import copy
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from lsap import REPO_ROOT, config, keys
from lsap.cli import main
from lsap.io import layout

# one job of each kind of the tiny config, with its wildcards
JOBS = {"corpus": {}, "tokenizer": {"role": "student"}, "shards": {}, "translation": {}, "overlap": {},
        "table1": {}, "reference_model": {"name": "surrogate"}, "student": {"method": "lsap_a0.05", "seed": 0},
        "student_ce": {"method": "ce", "seed": 0}, "evaluate": {}, "report": {}}


def _keys(cfg):
    out = {job: keys.key(cfg, job.split("_ce")[0], **wc) for job, wc in JOBS.items()}
    out["targets"] = keys.targets_id(cfg, "lsap_a0.05")
    out["selection"] = keys.selection_id(cfg, "salt_ds")
    return out


def _changed(cfg, edit):
    other = copy.deepcopy(cfg)
    edit(other)
    a, b = _keys(cfg), _keys(config.validate(other))
    return {j for j in a if a[j] != b[j]}


@pytest.mark.parametrize("edit, changed", [
    (lambda c: c["students"].update(budget_flops=2e12), {"student", "student_ce", "targets", "selection", "report"}),
    (lambda c: c["evaluation"].update(limit=3), {"evaluate", "report"}),
    (lambda c: c["methods"]["lsap_a0.05"].update(alpha=0.07), {"student", "report"}),
    (lambda c: c["methods"]["ce"].update(data="miniplm"), {"student_ce", "report"}),
    (lambda c: c["students"].update(seeds=[0, 1]), {"report"}),  # seed 0's jobs keep their keys
    (lambda c: c["training"].update(lr=1e-3), {"reference_model", "student", "student_ce"}),
    (lambda c: c["methods"]["salt_ds"].update(ds_zeros="keep"), {"selection", "report"}),
    (lambda c: c["corpus"].update(min_chars=100), {"corpus"}),  # downstream jobs rerun through their inputs
    # how resume states are written and how scoring is split change no result: no key
    (lambda c: c["training"].update(save_every_steps=None, save_every_minutes=30), set()),
    (lambda c: c["compute"].update(scoring_parts=5), set()),
    # too broad before: a Table-1 label or a size estimate reran the whole DAG; fraction order, CPU compile
    (lambda c: c["corpus"]["domains"]["wiki"].update(table1="FW-E"), {"table1"}),
    (lambda c: c["corpus"]["domains"]["wiki"]["sources"][0].update(tokens_per_doc=300), set()),
    (lambda c: c["training"].update(checkpoint_fractions=sorted(c["training"]["checkpoint_fractions"], reverse=True)),
     set()),
    (lambda c: c["training"].update(compile=True), set()),  # the loop compiles only on CUDA
    (lambda c: c["methods"]["salt_ds"].update(omega=0.5, rho=0.5, transition="linear"), {"report"}),  # not its scores
    (lambda c: c["methods"]["salt_ds"].update(kd_steps_frac=0.3), {"selection", "report"}),  # its pool: the KD phase
    # too narrow before: the domains' order is the text's order in the shards
    (lambda c: c["corpus"].update(domains=dict(reversed(list(c["corpus"]["domains"].items())))),
     {"corpus", "overlap", "report"}),
])
def test_a_key_changes_exactly_when_what_its_job_reads_changes(tiny_cfg, edit, changed):
    assert _changed(tiny_cfg, edit) == changed


def test_keys_hold_no_path_or_interpreter(tiny_cfg):
    for job, wc in JOBS.items():
        text = json.dumps(keys.reads(tiny_cfg, job.split("_ce")[0], **wc))
        assert str(REPO_ROOT) not in text and sys.executable not in text


def test_the_cli_refuses_a_config_that_is_not_the_planned_one(tmp_path, capsys, tiny_cfg):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_cfg))
    args = ["--key", "0123456789abcdef", "--part", "0", "--out", str(tmp_path / "c")]
    assert main(["corpus", "--config", str(path), *args]) == 2
    assert "is not the config this corpus job was planned with" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_results_folder_of_another_config_or_layout_is_refused(tmp_path):
    layout.check_run_dir(tmp_path, "x", "tiny")  # nothing there yet: fine
    layout.claim_run_dir(tmp_path, "x", "tiny")
    layout.check_run_dir(tmp_path, "x", "tiny")
    with pytest.raises(layout.LayoutError, match=r"run name 'x' is taken: results/x holds the results of tiny"):
        layout.check_run_dir(tmp_path, "x", "small")
    marker = tmp_path / layout.layout_marker("x")
    marker.write_text(json.dumps({"layout": layout.LAYOUT_VERSION - 1, "config": "tiny"}))
    with pytest.raises(layout.LayoutError, match=r"this code reads layout"):
        layout.check_run_dir(tmp_path, "x", "tiny")
    marker.unlink()
    (tmp_path / "results" / "x" / "students").mkdir()
    with pytest.raises(layout.LayoutError, match=r"has no LAYOUT file: it was written by an older layout"):
        layout.check_run_dir(tmp_path, "x", "tiny")


def test_snakemake_refuses_a_run_name_taken_by_another_config(tmp_path, tiny_cfg):
    run = "collision-test"
    out = REPO_ROOT / "results" / run
    try:
        layout.claim_run_dir(REPO_ROOT, run, "tiny")
        path = tmp_path / "mine.yaml"
        path.write_text(yaml.safe_dump({**tiny_cfg, "run": run}))
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(path)], cwd=REPO_ROOT,
                              capture_output=True, text=True)
        assert proc.returncode != 0
        assert f"run name '{run}' is taken" in proc.stdout + proc.stderr
    finally:
        shutil.rmtree(out, ignore_errors=True)
