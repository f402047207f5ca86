"""The slow tests of test_train.py: `make test` runs them,
`pytest` alone does not (whole corpora, real model files, real runs)."""

import json
import signal
import subprocess
import time

import pytest
import torch
import yaml
from conftest import SMALL
from test_train import (  # (tests/training/ is on sys.path)
    DDP_METHODS,
    _cli,
    _env,
    _run,
    _weights,
)

from lsap import REPO_ROOT, config, models
from lsap.methods.objectives import lsap_loss


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(setup):
    root, _, _ = setup
    if not (root / "full" / "resume.pt").exists():
        _run(_cli(root, root / "full"))
    out = root / "killed"
    proc = subprocess.Popen(_cli(root, out), cwd=REPO_ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it hard once it has a checkpoint and is past it
        if (out / "log.jsonl").exists() and len((out / "log.jsonl").read_text().splitlines()) >= 7:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len((out / "log.jsonl").read_text().splitlines())
    assert 0 < done < 24, "the run should have been killed mid-way"
    assert not (out / "summary.json").exists()
    _run(_cli(root, out))
    a, b = _weights(root / "full"), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 25))  # the log reads as one uninterrupted run


@pytest.mark.slow
@pytest.mark.parametrize("method", list(DDP_METHODS))
def test_two_gloo_processes_match_one_with_double_accumulation(setup, teachers, method):
    """DDP of a teacher-free, a surrogate-reading and a teacher-reading student: 2 processes with
    one micro-batch each train the same weights as 1 process accumulating two; the 2-process run
    decides its clock-based saves on rank 0 (every step here) and every rank follows."""
    root, cfg, _ = setup
    base = config.validate({**cfg, "methods": {method: DDP_METHODS[method]}, "students": {
        **cfg["students"], "methods": [method], "teachers": {**cfg["students"]["teachers"], **teachers}}})
    one = dict(base, training={**base["training"], "grad_accum": 2})
    two = dict(base, training={**base["training"], "grad_accum": 1, "save_every_steps": None, "save_every_minutes": 1e-9},
               compute={**base["compute"], "gpus": 2})  # 2 processes
    extra = ["--method", method] + (["--translation", str(root / "translation.npz")] if "lsap" in method else [])
    (root / "cfg.yaml").write_text(yaml.safe_dump(one))
    try:
        _run(_cli(root, root / f"one-{method}") + extra)
        (root / "cfg.yaml").write_text(yaml.safe_dump(two))
        _run(_cli(root, root / f"two-{method}", nproc=2) + extra)
    finally:
        (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    a, b = _weights(root / f"one-{method}"), _weights(root / f"two-{method}")
    summary = json.loads((root / f"two-{method}" / "summary.json").read_text())
    assert summary["steps"] == json.loads((root / f"one-{method}" / "summary.json").read_text())["steps"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_compiled_student_matches_eager_on_cpu():
    """torch.compile (inductor, here on CPU) of the module the loop compiles on GPU (models.Trunk,
    with its causal-sdpa attention) and the LSAP loss through it: same loss and gradients as eager."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 400, (2, 33), generator=g)
    cand = (torch.randint(0, 400, (2, 32, 15), generator=g), torch.log(torch.rand(2, 32, 15, generator=g) * 0.2))

    def loss_and_grads(compiled):
        model = models.build(SMALL, 400, 32, 0)
        net = models.Trunk(model)
        net = torch.compile(net, backend="inductor") if compiled else net
        objective = lsap_loss.LSAP(lambda i, t, _: cand, 0.05).bind(model)
        loss, _ = objective(net, x, None, 0, 10)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    (l0, g0), (l1, g1) = loss_and_grads(False), loss_and_grads(True)
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_retrained_teacher_retrains_its_student(setup, tmp_path, monkeypatch):
    """The fault found by hand: a teacher retrained on another budget kept its student's old weights.
    Rerunning the same SALT student job over a retrained teacher starts again and ends elsewhere."""
    from lsap.io import checkpoints
    from lsap.stages import train as stage

    root, cfg, tok_dir = setup
    teacher = tmp_path / "salt_teacher" / "frac-1.00"
    monkeypatch.setattr(models, "trained_checkpoint", lambda c, name, fraction=1.0: teacher)
    cfg = config.validate({**cfg, "methods": {"salt": {"objective": "salt"}}, "students": {
        **cfg["students"], "methods": ["salt"],
        "teachers": {**cfg["students"]["teachers"], "salt_teacher": {"kind": "trained", "name": "salt_teacher"}}}})
    out = tmp_path / "student"

    def student(teacher_seed):
        models.build(SMALL, 400, 33, teacher_seed).save_pretrained(teacher)
        checkpoints.record(teacher)
        stage.run_job(cfg, "student", tok_dir, root / "shards", out, "key", method="salt")
        return _weights(out)

    first, second = student(1), student(2)
    assert not all(torch.equal(first[k], second[k]) for k in first)
    assert (tmp_path / ".student.stale").is_dir()  # the old run kept aside, not resumed
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()][0] == 1
