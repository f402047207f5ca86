"""The one training loop: FLOPs budget, schedule, data order, checkpoints, exact resume, DDP."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import SMALL

from lsap import REPO_ROOT, config, models
from lsap.data import sampler, shards, vocab
from lsap.methods import losses
from lsap.methods.objectives import lsap_loss
from lsap.training import loop


def _cli(root, out, extra_env=None, nproc=1):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    return launcher + ["-m", "lsap", "train", "--config", str(root / "cfg.yaml"), "--role", "student",
                       "--tokenizer", str(root / "tok"), "--shards", str(root / "shards"), "--out", str(out)]


def _weights(out):
    return torch.load(out / "resume.pt", weights_only=False)["model"]


def _env(**kw):
    return {**os.environ, "OMP_NUM_THREADS": "1", **kw}


def _run(cmd, **kw):
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=_env(), **kw)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_budget_checkpoints_and_log(setup):
    root, cfg, _ = setup
    out = root / "full"
    proc = _run(_cli(root, out))
    summary = json.loads((out / "summary.json").read_text())
    # a redirected log is watchable: timestamped lines with the step of the total, val_loss, time left
    lines = [line for line in proc.stderr.splitlines() if "[train] step" in line]
    assert "\r" not in proc.stderr and any("step 24/24 (100.0 %)" in line and "val_loss" in line for line in lines)
    assert sum("val_loss" in line for line in lines) == 4 and "| eta " in lines[-1]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[train\] step \d+/24 .*\| loss [\d.]+ \| ce [\d.]+.* \| lr "
                        r"[\d.e-]+ \| [\d,]+ tok/s \| elapsed [\d.]+ min \| eta [\d.]+ min$", line) for line in lines), lines
    assert summary["steps"] == 24 and summary["flops"] <= summary["budget_flops"]
    assert summary["budget_flops"] - summary["flops"] < summary["flops"] / summary["steps"]  # within a step
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 25))
    times = [r["time"] for r in log]
    assert {r["total_steps"] for r in log} == {24} and times == sorted(times)
    assert [r["step"] for r in log if "val_loss" in r] == [6, 12, 18, 24]
    assert log[-1]["val_loss"] < log[0]["ce"] and summary["final_val_loss"] == log[-1]["val_loss"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for frac in ("0.25", "0.50", "0.75", "1.00"):
        ck = out / "checkpoints" / f"frac-{frac}"
        assert AutoModelForCausalLM.from_pretrained(ck).config.model_type == "olmo2"
        assert len(AutoTokenizer.from_pretrained(ck)) == 400
    assert summary["unigram_entropy"] > 0


DDP_METHODS = {"ce": {"objective": "ce"}, "lsap": {"objective": "lsap", "alpha": 0.05, "targets": "online"},
               "salt": {"objective": "salt"},
               # the random-target control with every LSAP knob off its default: draws per rank and micro-batch
               "lsap_control": {"objective": "lsap", "alpha": 0.003, "targets": "online", "proposals": "unigram",
                                "aux_positions": "shared_target", "normaliser": "split", "lambda_scale": 0.3}}


class _NanAt(losses.CrossEntropy):
    def __init__(self, step):
        self.at = step

    def __call__(self, net, x, seq_ids, step, total_steps):
        loss, parts = super().__call__(net, x, seq_ids, step, total_steps)
        return (loss * float("nan") if step >= self.at else loss), parts


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(setup, tmp_path):
    root, cfg, _ = setup
    data = shards.open_shard(root / "shards", "train")
    model = models.build(SMALL, 400, 32, 0)
    with pytest.raises(loop.TrainingError, match="non-finite loss .* at step 4 "):
        loop.train(model, data, _NanAt(4), tmp_path, cfg["training"], cfg["students"]["budget_flops"], 0,
                    log=lambda *_: None)
    state = torch.load(tmp_path / "resume.pt", weights_only=False)
    assert state["step"] == 3  # the non-finite step was neither applied nor saved
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_schedule_warms_up_then_decays_to_the_floor():
    f = loop.lr_lambda(100, 0.1, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(99) == pytest.approx(0.1, abs=1e-3) and f(55) < f(20)


def test_data_order_is_a_function_of_the_step():
    one = loop.Dist()
    seen = np.concatenate([np.concatenate(sampler.sample_ids(s, 4, 2, one, 40, 7)) for s in range(5)])
    assert sorted(seen) == list(range(40))  # one epoch = every sequence once
    ranks = [np.concatenate(sampler.sample_ids(3, 4, 1, loop.Dist(r, 2), 40, 7)) for r in (0, 1)]
    assert sorted(np.concatenate(ranks)) == sorted(np.concatenate(sampler.sample_ids(3, 4, 2, one, 40, 7)))


def test_the_sampler_at_the_paper_split_permutes_once_per_epoch_not_per_micro_batch():
    """paper.yaml's train split is 51,512,195 sequences: the real size, on 8 ranks. The epoch's
    permutation is made once (memoised) and every later micro-batch is a lookup; the order is the
    one the per-call permutation gave (resumed runs read the same data)."""
    n, world = 51_512_195, 8
    sampler.epoch_permutation.cache_clear()
    first = sampler.sample_ids(10, 8, 2, loop.Dist(3, world), n, 0)
    for step in range(11, 20):
        for r in range(world):
            sampler.sample_ids(step, 8, 2, loop.Dist(r, world), n, 0)
    info = sampler.epoch_permutation.cache_info()
    assert info.misses == 1 and info.hits == 2 * 9 * world + 1  # one per micro-batch, one permutation
    direct = np.random.default_rng([0, 0]).permutation(n)
    g0 = 10 * 8 * 2 * world + 3 * 8  # rank 3's first slot at step 10
    assert np.array_equal(first[0], direct[g0:g0 + 8])
    # a step that crosses the epoch boundary reads the next epoch's permutation
    small = [np.concatenate(sampler.sample_ids(s, 3, 1, loop.Dist(), 10, 5)) for s in range(4)]
    assert sorted(np.concatenate(small)[:10]) == list(range(10))


def test_visited_is_every_sequence_the_runs_sampler_reads():
    from lsap.training import plan

    cfg = {"training": {"micro_batch": 4, "grad_accum": 2}, "compute": {"gpus": 2}}
    for steps, n in ((3, 100), (9, 100)):  # part of an epoch; more than one
        p = plan.RunPlan(steps, 16, 32, 6, 0, 0.0)
        read = {int(i) for s in range(steps) for r in range(2)
                for ids in sampler.sample_ids(s, 4, 2, loop.Dist(r, 2), n, 11) for i in ids}
        assert set(plan.visited(p, cfg, n, 11).tolist()) == read


def test_a_checkpoint_of_another_setup_is_set_aside_not_resumed(setup, tmp_path):
    root, cfg, _ = setup
    data = shards.open_shard(root / "shards", "train")
    kw = dict(val=None, log=lambda *_: None)
    budget = cfg["students"]["budget_flops"]
    first = loop.train(models.build(SMALL, 400, 32, 0), data, losses.CrossEntropy(), tmp_path / "run",
                        cfg["training"], budget, 0, run_key="a", **kw)
    second = loop.train(models.build(SMALL, 400, 32, 0), data, losses.CrossEntropy(), tmp_path / "run",
                         cfg["training"], budget / 2, 0, run_key="a", **kw)
    assert second["steps"] == first["steps"] // 2 and (tmp_path / ".run.stale").is_dir()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, second["steps"] + 1))


def test_a_damaged_resume_checkpoint_names_the_file_and_the_fix(setup, tmp_path):
    root, cfg, _ = setup
    data = shards.open_shard(root / "shards", "train")
    (tmp_path / "resume.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(loop.TrainingError, match=r"resume.pt is damaged and cannot be resumed .* Delete it"):
        loop.train(models.build(SMALL, 400, 32, 0), data, losses.CrossEntropy(), tmp_path, cfg["training"],
                    cfg["students"]["budget_flops"], 0, log=lambda *_: None)


def test_a_damaged_checkpoint_names_the_folder_and_the_fix(setup, tmp_path):
    """A teacher or an evaluation reads a final checkpoint whose weights were truncated."""
    from lsap.evaluation import evaluate

    root, cfg, tok_dir = setup
    ckpt = tmp_path / "salt_teacher" / "checkpoints" / "frac-1.00"
    models.build(SMALL, 400, 32, 0).save_pretrained(ckpt)
    vocab.load(tok_dir).save_pretrained(ckpt)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    for load in (lambda: evaluate.load_checkpoint(ckpt), lambda: models.load_pretrained({"kind": "hub", "id": str(ckpt)})):
        with pytest.raises(RuntimeError, match=rf"checkpoint {ckpt} is damaged .* Delete the run folder"):
            load()


def test_a_shard_shorter_than_a_micro_batch_is_refused_by_name(setup, small_corpus, tmp_path):
    root, cfg, tok_dir = setup
    n_tokens = shards.open_shard(root / "shards", "validation").manifest["n_tokens"]
    long = n_tokens // 3 - 1  # sequences so long that the split holds 3 of them, micro_batch is 4
    shards.write_split(tok_dir, small_corpus, "validation", tmp_path, seq_len=long, log=lambda *_: None)
    data = shards.open_shard(tmp_path, "validation")
    with pytest.raises(loop.TrainingError, match=rf"validation.json holds 3 sequences of {long + 1} tokens, fewer"):
        loop.train(models.build(SMALL, 400, long, 0), data, losses.CrossEntropy(), tmp_path / "run",
                    cfg["training"], cfg["students"]["budget_flops"], 0, val=None, log=lambda *_: None)


def test_no_host_sync_per_micro_batch(setup, tmp_path, monkeypatch):
    """A GPU step must not wait on the host between its micro-batches: the loop (and LSAP's loss)
    copies its logged numbers once per step. Counted on CPU: every Tensor -> Python conversion
    during a run with 4 micro-batches per step equals that of 1 micro-batch per step."""
    root, cfg, _ = setup
    data = shards.open_shard(root / "shards", "train")
    g = torch.Generator().manual_seed(0)
    cand = (torch.randint(0, 400, (4, 32, 15), generator=g), torch.log(torch.rand(4, 32, 15, generator=g) * 0.2))
    calls = {"n": 0}
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        orig = getattr(torch.Tensor, name)

        def counted(self, *a, _orig=orig, **kw):
            calls["n"] += 1
            return _orig(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, counted)

    def syncs(grad_accum):
        model = models.build(SMALL, 400, 32, 0)
        tcfg = {**cfg["training"], "grad_accum": grad_accum, "checkpoint_fractions": [1.0], "save_every_steps": 100}
        flops_per_step = models.train_flops_per_token(model) * 4 * grad_accum * 32
        objective = lsap_loss.LSAP(lambda i, t, _: cand, 0.05)
        calls["n"] = 0
        loop.train(model, data, objective, tmp_path / f"accum{grad_accum}", tcfg, 3.5 * flops_per_step, 0,
                    log=lambda *_: None)
        return calls["n"]

    assert syncs(1) == syncs(4)
    assert torch.backends.cuda.matmul.allow_tf32  # the loop turns TF32 on for the fp32 matmuls left on GPU


def test_a_flipped_weight_byte_is_refused_when_the_checkpoint_is_read(tmp_path):
    """The loop records each checkpoint's weights; every load of a local folder checks them."""
    from transformers import AutoModelForCausalLM

    from lsap.io import checkpoints

    folder = tmp_path / "references" / "teacher" / "checkpoints" / "frac-1.0"
    models.build(SMALL, 400, 32, 0).save_pretrained(folder)
    checkpoints.record(folder)
    assert models.from_pretrained(AutoModelForCausalLM, str(folder)) is not None
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x40  # inside the last tensor's data (the header is at the start)
    weights.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match=r"model\.safetensors is not the file that was saved.*rerun"):
        models.from_pretrained(AutoModelForCausalLM, str(folder))


def test_a_retrained_teacher_changes_its_students_resume_identity(setup, tmp_path, monkeypatch):
    """The job key names the config; the resume identity also names the content of what the job
    reads: the same SALT student over a teacher retrained (other weights) must not resume."""
    from lsap.io import checkpoints
    from lsap.stages.train import input_identity

    root, cfg, _ = setup
    data, val = shards.open_shard(root / "shards", "train"), shards.open_shard(root / "shards", "validation")
    teacher = tmp_path / "frac-1.0"
    monkeypatch.setattr(models, "trained_checkpoint", lambda c, name, fraction=1.0: teacher)
    cfg = {**cfg, "methods": {**cfg["methods"], "salt": {**cfg["methods"].get("salt", {}), "objective": "salt",
                                                         "data": "all"}},
           "students": {**cfg["students"], "teachers": {**cfg["students"]["teachers"],
                                                        "salt_teacher": {"kind": "trained", "name": "salt_teacher"}}}}
    ids = []
    for seed in (0, 1):  # two trainings of the teacher: other weights
        models.build(SMALL, 400, 32, seed).save_pretrained(teacher)
        checkpoints.record(teacher)
        ids.append(input_identity(cfg, "salt", data, val))
    assert ids[0] != ids[1]
    assert input_identity(cfg, "salt", data, val) == ids[1]  # unchanged inputs: the same identity
    assert input_identity(cfg, "ce", data, val) == input_identity(cfg, "ce", data, val)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_job_that_sees_no_gpu_stops_at_once(tiny_cfg, monkeypatch):
    """A CUDA build of torch that reaches no device (a driver mismatch) inside a GPU job stops; a
    CPU-only build (fake GPUs of the local Slurm) and compute.gpus 0 train on the CPU."""
    from lsap.stages.train import check_devices

    gpu_cfg = {**tiny_cfg, "compute": {**tiny_cfg["compute"], "gpus": 8}}
    check_devices(tiny_cfg, loop.Dist())
    check_devices(gpu_cfg, loop.Dist(0, 8))  # this machine's CPU build: a deliberate CPU run
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(loop.TrainingError, match=r"compute.gpus is 8 .* sees 0 CUDA device"):
        check_devices(gpu_cfg, loop.Dist(0, 8))


def test_a_second_trainer_on_the_same_folder_stops(setup, tmp_path):
    """An orphan trainer (its Snakemake killed) still holds the folder: a rerun's trainer must stop,
    naming it, not write the same log and checkpoints beside it."""
    root, cfg, _ = setup
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                               "from lsap.training import resume; from pathlib import Path; "
                               "f = resume.lock_run_folder(Path(sys.argv[2])); print('held', flush=True); time.sleep(60)",
                               str(REPO_ROOT / "src"), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        data = shards.open_shard(root / "shards", "train")
        with pytest.raises(loop.TrainingError, match=rf"another trainer \(pid {holder.pid}\) is training into"):
            loop.train(models.build(SMALL, 400, 32, 0), data, losses.CrossEntropy(), out, cfg["training"],
                        cfg["students"]["budget_flops"], 0, log=lambda *_: None)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "log.jsonl").exists()


def test_a_torn_resume_file_falls_back_to_the_generation_before(setup, tmp_path):
    root, cfg, _ = setup
    data = shards.open_shard(root / "shards", "train")
    run = lambda: loop.train(models.build(SMALL, 400, 32, 0), data, losses.CrossEntropy(), tmp_path / "run",  # noqa: E731
                              cfg["training"], cfg["students"]["budget_flops"], 0, run_key="k", log=logged.append)
    logged = []
    first = run()
    last, prev = tmp_path / "run" / "resume.pt", tmp_path / "run" / "resume.prev.pt"
    assert torch.load(prev, weights_only=False)["step"] < torch.load(last, weights_only=False)["step"] == first["steps"]
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # torn mid-write
    logged.clear()
    second = run()
    assert any("generation before it" in m for m in logged) and second["steps"] == first["steps"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, first["steps"] + 1))  # resumed from the earlier step, the log reads as one run


def test_a_bf16_evaluation_checkpoint_holds_the_rounded_weights_tied_and_recorded(tmp_path):
    """The GPU path's checkpoint (bf16, as training computes there), on CPU: half the bytes, every
    weight its bf16 rounding, the tied head one tensor, the record verified when it is read."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from lsap.io import checkpoints

    spec = {"arch": "qwen3", "hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "tie_embeddings": True}
    model = models.build(spec, 500, 33, 0)
    assert model.config.tie_word_embeddings
    checkpoints.save(model, tmp_path / "fp32")
    checkpoints.save(model, tmp_path / "bf16", torch.bfloat16)
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    assert 0.49 < size(tmp_path / "bf16") / size(tmp_path / "fp32") < 0.52
    with safe_open(tmp_path / "bf16" / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
        assert "lm_head.weight" not in f.keys()  # tied: stored once
    back = models.from_pretrained(AutoModelForCausalLM, str(tmp_path / "bf16"), dtype=torch.float32)
    want = {k: v.to(torch.bfloat16).float() for k, v in model.state_dict().items()}
    for k, v in back.state_dict().items():
        assert torch.equal(v, want[k]), k
    assert back.get_output_embeddings().weight.data_ptr() == back.get_input_embeddings().weight.data_ptr()
    assert checkpoints.recorded(tmp_path / "bf16")


@pytest.mark.parametrize("proposals", ["unigram", "uniform"])
def test_the_controls_build_from_the_training_shard_and_step(setup, teachers, proposals):
    """The controls read the training shard's unigram and the Σ∩ tables through the method registry
    and give a finite loss with a gradient, on real shards and tokenizers."""
    from lsap import methods

    root, cfg, tok_dir = setup
    # the random surrogate is near uniform over its 300 entries: α below 1/300 gives it candidates
    cfg = config.validate({**cfg, "methods": {"c": {"objective": "lsap", "alpha": 0.003, "targets": "online",
                                                    "proposals": proposals, "aux_positions": "shared_target"}},
                           "students": {**cfg["students"], "methods": ["c"],
                                        "teachers": {**cfg["students"]["teachers"], **teachers}}})
    data = shards.open_shard(root / "shards", "train")
    model = models.build(SMALL, 400, 32, seed=0)
    obj, _, _ = methods.build(cfg, "c", model, len(data), root / "translation.npz", data=data,
                              dev=torch.device("cpu"))
    counts = shards.unigram_counts(data)
    assert counts.sum() == data.manifest["n_tokens"] and obj.unigram.shape[0] == len(vocab.load(tok_dir))
    assert not obj.shared_target.all() and obj.shared_target.any()  # Σ∩ is a real subset
    x = torch.from_numpy(data.sequences[:4].astype(np.int64))
    loss, parts = obj.bind(model)(models.Trunk(model), x, np.arange(4), 0, 10)
    loss.backward()
    assert torch.isfinite(loss) and float(parts["targets_per_pos"]) > 0
    assert model.get_output_embeddings().weight.grad.abs().sum() > 0


def test_the_curves_open_in_tensorboard_and_a_resumed_run_reads_as_one(setup, tmp_path):
    """training.tensorboard: every numeric log.jsonl field as a TensorBoard scalar at its step, read
    back with TensorBoard's own reader. A run resumed from the generation before a torn file redoes
    steps the first one logged: those are purged, so each step appears once, as in log.jsonl."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, cfg, _ = setup
    data = shards.open_shard(root / "shards", "train")
    training = {**cfg["training"], "tensorboard": True}
    run = lambda: loop.train(models.build(SMALL, 400, 32, 0), data, losses.CrossEntropy(), tmp_path / "run",  # noqa: E731
                              training, cfg["students"]["budget_flops"], 0, run_key="k", log=lambda *_: None)
    first = run()
    last = tmp_path / "run" / "resume.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # the second run redoes the last steps
    run()
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 2
    curves = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    curves.Reload()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    loss = curves.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in log] == list(range(1, first["steps"] + 1))
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in log], rel=1e-6)   # float32 there
    assert {"train/lr", "train/grad_norm", "train/tok_s", "train/ce", "train/flops"} <= set(curves.Tags()["scalars"])
