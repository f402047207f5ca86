"""Logs you can tail: every line of a job's log starts with a time stamp, no progress bar redraws
its line with '\\r', and a third-party warning repeated word for word is printed once.

Each log here is a real process's stdout and stderr into one file, as every Snakemake rule writes
it (`> {log} 2>&1`)."""

import os
import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from lsap import REPO_ROOT

STAMP = re.compile(r"^\d{4}-\d\d-\d\d[ :]\d\d:\d\d:\d\d ")


def _log(cmd, path, **env) -> str:
    with open(path, "w") as f:
        subprocess.run(cmd, cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    with open(path, newline="") as f:  # newline="": a '\r' stays a '\r' (text mode would make it a line end)
        return f.read()


def _unstamped(text: str) -> list[str]:
    return [line for line in text.split("\n")[:-1] if not STAMP.match(line)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from test_checkpoints_card import tiny_setup  # the same tiny real run (tests/ is on sys.path)

    root = tmp_path_factory.mktemp("logs")
    cfg, _, _ = tiny_setup(root)
    (root / "cfg.yaml").write_text(yaml.safe_dump(dict(cfg)))
    return root


def test_a_training_jobs_log_is_stamped_lines(inputs):
    """Fails on the code before this change: transformers' 'Writing model shards' bar redrew its
    line with '\\r' at every checkpoint, and the stage's own lines ('[train] ce: 8 steps ...',
    '[train] done in ...') carried no time."""
    root = inputs
    text = _log([sys.executable, "-m", "lsap", "train", "--config", str(root / "cfg.yaml"), "--role", "student",
                 "--method", "ce", "--tokenizer", str(root / "tok"), "--shards", str(root / "shards"),
                 "--out", str(root / "run")], root / "train.log")
    assert "\r" not in text, text
    assert text.endswith("\n") and not _unstamped(text), _unstamped(text)
    lines = text.splitlines()
    assert "[train] ce: 8 steps" in lines[0] and "[train] done in" in lines[-1]
    checkpoints = len(yaml.safe_load((root / "cfg.yaml").read_text())["training"]["checkpoint_fractions"])
    assert sum("[train] step " in line for line in lines) == checkpoints  # one per checkpoint (val_loss), once


def test_bars_warnings_and_tracebacks_of_third_parties(tmp_path):
    """Fails on the code before this change (there was no job-log setup, lsap.io.progress.install):
    a tqdm bar wrote every redraw into the log with '\\r', a torch warning raised from two lines
    three times was printed six times with its source line, and a traceback was unstamped."""
    script = textwrap.dedent("""
        import time

        import torch
        from tqdm import tqdm

        from lsap.io.progress import install

        install(every_s=0.05)
        for _ in tqdm(range(6), desc="scoring", mininterval=0):
            time.sleep(0.03)
        x = torch.zeros(2)
        for _ in range(3):
            torch.tensor(x)  # torch: UserWarning 'To copy construct from a tensor ...'
            torch.tensor(x)  # the same warning from another line
        print("last words", end="")
        raise RuntimeError("a failing job")
        """)
    (tmp_path / "job.py").write_text(script)  # a file, so the warnings module prints each warning's source line
    text = _log([sys.executable, str(tmp_path / "job.py")], tmp_path / "job.log", PYTHONWARNINGS="always")
    assert "\r" not in text, repr(text[:2000])
    assert not _unstamped(text), _unstamped(text)
    lines = text.splitlines()
    assert sum("UserWarning: To copy construct from a tensor" in line for line in lines) == 1, text
    assert sum("torch.tensor(x)" in line for line in lines) == 1, text  # the source line under it, once
    bar = [line for line in lines if "scoring:" in line]
    assert bar and "6/6" in bar[-1] and len(bar) <= 7, bar  # throttled redraws, then the last state
    # a print without a newline still lands, before the traceback that ends the job
    assert lines[-5].endswith(" last words") and "Traceback" in lines[-4], lines[-5:]
    assert lines[-1].endswith("RuntimeError: a failing job")


def test_a_stdout_read_on_its_own_is_left_as_printed():
    """A command whose stdout is data (`lsap plan --json`, read apart from its stderr) prints it
    unstamped: only a stdout that shares the log file with stderr is stamped."""
    proc = subprocess.run([sys.executable, "-m", "lsap", "plan", "--config", str(REPO_ROOT / "config" / "tiny.yaml"),
                           "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    assert json.loads(proc.stdout)
