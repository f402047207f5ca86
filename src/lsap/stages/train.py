"""The train stage (`python -m lsap train`): a student (one method, one seed) or a model this run
trains for a method, assembled from the config and the files earlier stages wrote, sized by the
run plan, resumable only on the same inputs."""

from __future__ import annotations

import json
from pathlib import Path

from lsap import models
from lsap.config_types import RunConfig
from lsap.data.shards import Shard
from lsap.io import checkpoints
from lsap.training import budget
from lsap.training.loop import Dist, TrainingError, train

# the ledger fields a student's summary carries (its training and teacher FLOPs the loop counts itself)
LEDGER = ("matched_budget_flops", "budget_factor", "budget_counts", "trained_models_flops", "selection_flops")


def run_job(cfg: RunConfig, role: str, tokenizer_dir, shards_dir, out, key: str, method: str | None = None,
            seed: int = 0, split: str = "train", translation=None, targets=None, scores=None) -> dict:
    """The train stage: a student (`role` student: one method, one seed) or a model this run
    trains for a method (a `references` entry), sized by the run plan, resumable under `key`."""
    from lsap import methods
    from lsap.data import shards, vocab
    from lsap.methods.losses import CrossEntropy

    check_devices(cfg, Dist.from_env())  # each rank on its own GPU before any teacher is loaded
    tok = vocab.load(tokenizer_dir)
    fp = vocab.fingerprint(tokenizer_dir)
    data = shards.open_shard(shards_dir, split, tokenizer=fp, verify=False)  # verified at their gather
    val = shards.open_shard(shards_dir, "validation", tokenizer=fp, verify=False)
    if role == "student":
        if method not in cfg["methods"]:
            raise TrainingError(f"no method '{method}' in the config's methods section "
                                f"(defined: {', '.join(sorted(cfg['methods']))})")
        model = models.build(cfg["students"]["model"], len(tok), data.seq_len, seed=seed)
        objective, indices, extra = methods.build(cfg, method, model, len(data), translation, targets, scores,
                                                   data=data)
        run = budget.student(cfg, method, len(tok), data.seq_len, extra.get("selection_flops", 0.0))
        # the compute ledger: every cost of this run, charged to the matched budget or not
        extra.update({k: v for k, v in run.ledger().items() if k in LEDGER})
    else:
        ref = cfg["references"][role]
        model = models.build(ref["model"], len(tok), data.seq_len, seed=seed)
        run = budget.reference(cfg, role, len(tok), data.seq_len)
        objective, indices, extra = CrossEntropy(), None, {}
    tcfg = cfg["training"] if role == "student" else {**cfg["training"],
                                                      "checkpoint_fractions": methods.checkpoint_fractions(cfg, role)}
    inputs = input_identity(cfg, method if role == "student" else None, data, val, translation, targets, scores)
    # the loop spends the record's training FLOPs and refuses to train other than its steps
    summary = train(model, data, objective, out, tcfg, run.loop_flops, seed, indices=indices, val=val,
                    tokenizer=tok, extra={**extra, "inputs": inputs}, run_key=f"{key}|{inputs}",
                    expected_steps=run.steps)
    if Dist.from_env().main:  # the final checkpoint's model card (lsap.io.checkpoints.write_card)
        from lsap import keys
        from lsap.io import layout
        from lsap.report import provenance

        m = cfg["methods"][method] if role == "student" else None
        what = (f"`{method}` ({methods.label(m)}, objective `{m['objective']}`)" if m
                else f"`{role}` (cross-entropy, a model this run trains for a method)")
        checkpoints.write_card(layout.checkpoint(out, max(tcfg["checkpoint_fractions"])), cfg["run"], summary, what,
                               seed, {"git_commit": provenance.git_commit(), "config_hash": keys.digest(cfg),
                                      "job_key": key}, domains=list(cfg["corpus"]["domains"]))
    return summary


def check_devices(cfg: RunConfig, dist: Dist) -> None:
    """One GPU per process for a job the config gives GPUs (lsap.models.require_gpu)."""
    try:
        models.require_gpu(cfg, "train", dist.world)
    except models.DeviceError as e:
        raise TrainingError(str(e)) from None


def input_identity(cfg: RunConfig, method: str | None, data: Shard, val: Shard, translation=None, targets=None,
                   scores=None) -> str:
    """The content of everything a training job reads, as one digest: the shards' hashes, the
    recorded weights of every model this run trained that the method runs as a teacher, the Σ∩
    tables, the targets cache and the selection scores. Part of the resume key: a rerun after any
    of them changed starts from step 0 (the job key alone names the config, not its inputs'
    content: a teacher retrained on another budget keeps its student's key)."""
    import hashlib

    from lsap import methods
    from lsap.io.files import sha256_file

    parts = {"train": data.manifest.get("sha256"), "validation": val.manifest.get("sha256")}
    if method is not None:
        for role in methods.teacher_roles(cfg["methods"][method]):
            spec = cfg["students"]["teachers"][role]
            if spec["kind"] == "trained":
                parts[role] = checkpoints.identity(models.trained_checkpoint(cfg, spec["name"]))
    for name, path in (("translation", translation), ("scores", scores)):
        if path is not None:
            parts[name] = sha256_file(path)
    if targets is not None:
        parts["targets"] = json.loads((Path(targets) / "meta.json").read_text()).get("sha256")
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
