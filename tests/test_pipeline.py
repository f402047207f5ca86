"""End to end: the real Snakemake DAG on the tiny config, in a run folder of its own."""

import shutil
import subprocess
import sys

import pytest

from lsap import REPO_ROOT, shards, vocab

RUN = "e2e-test"


@pytest.fixture(scope="module")
def dag_run(fetched):
    out = REPO_ROOT / "results" / RUN
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", f"run={RUN}"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    yield out, cmd
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.slow
def test_tiny_dag_runs_end_to_end(dag_run):
    out, cmd = dag_run
    for role in ("student", "surrogate"):
        fp = vocab.fingerprint(out / "tokenizers" / role)
        for split in ("train", "validation", "reference"):
            s = shards.open_shard(out / "shards" / role / f"{split}.bin", tokenizer=fp)
            assert len(s) > 0
    for log in ("corpus.log", "tokenizer_student.log", "shards_student.log"):
        assert "done in" in (out / "logs" / log).read_text()
    student = vocab.load(out / "tokenizers" / "student").get_vocab()
    surrogate = vocab.load(out / "tokenizers" / "surrogate").get_vocab()
    shared = len(set(student) & set(surrogate))
    assert 0 < shared < min(len(student), len(surrogate))  # partial overlap, by design


@pytest.mark.slow
def test_second_run_has_nothing_to_do(dag_run):
    _, cmd = dag_run
    proc = subprocess.run([*cmd, "-n"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
