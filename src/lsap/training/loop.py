"""One training loop for every method: a FLOPs budget, AdamW with warmup + cosine, gradient
accumulation and clipping, bf16 autocast on GPU, DDP under torchrun, HF checkpoints at fixed
fractions of the budget, and exact resume from the last checkpoint.

A method supplies the data (which sequences, possibly changing with the step) and the objective
(which owns the forward pass from hidden states and declares the teacher FLOPs it adds per
token, on the steps its teacher runs) and nothing else.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lsap import models
from lsap.config_types import Training
from lsap.data.sampler import sample_ids
from lsap.data.shards import Shard
from lsap.io import checkpoints, layout
from lsap.io.files import atomic_dir, write_json
from lsap.io.progress import Progress
from lsap.training import plan, resume
from lsap.training.curves import Curves
from lsap.training.resume import TrainingError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Dist":
        d = cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
        if torch.cuda.is_available():
            # before anything touches CUDA (the process group, a teacher's weights): otherwise
            # every rank's tensors made with device="cuda" land on cuda:0
            torch.cuda.set_device(d.device)
        if d.world > 1 and not torch.distributed.is_initialized():
            # an explicit timeout above a checkpoint's save (rank 0 writes ~18 GB for OLMo2-1B with
            # AdamW while the others wait at the barrier): NCCL's default would end the run
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                                 timeout=datetime.timedelta(minutes=60))
        return d

    @property
    def device(self) -> torch.device:
        return torch.device(f"cuda:{self.local_rank}") if torch.cuda.is_available() else torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def agree(self, flag: bool, needed: bool = True) -> bool:
        """Rank 0's `flag` on every rank (a decision read from rank 0's clock); `needed` False:
        every rank computed the same flag already, nothing is sent."""
        if self.world == 1 or not needed:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        torch.distributed.broadcast(t, 0)
        return bool(t.item())


def lr_lambda(total_steps: int, warmup_frac: float, min_lr_frac: float):
    warmup = max(1, round(warmup_frac * total_steps))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


def to_host(parts: dict, gnorm: torch.Tensor) -> tuple[dict[str, float], float]:
    """The step's logged parts and gradient norm as Python floats in one device-to-host copy:
    the step's only sync, after its micro-batches (per-micro-batch .item() would stall the GPU)."""
    keys = [k for k, v in parts.items() if torch.is_tensor(v)]
    values = torch.stack([parts[k].float().reshape(()) for k in keys] + [gnorm.float().reshape(())]).tolist()
    host = {k: float(v) for k, v in parts.items() if not torch.is_tensor(v)}
    return {**host, **dict(zip(keys, values[:-1], strict=True))}, values[-1]


@torch.no_grad()
def eval_loss(model, val: Shard, n_seq: int, micro: int, dev, autocast) -> float:
    model.eval()
    seqs = val.sequences[: min(n_seq, len(val))]
    total, count = 0.0, 0
    for i in range(0, len(seqs), micro):
        x = torch.from_numpy(seqs[i:i + micro].astype(np.int64)).to(dev)
        with autocast():
            logits = model(input_ids=x[:, :-1]).logits
        total += torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), x[:, 1:], reduction="sum").item()
        count += x[:, 1:].numel()
    model.train()
    return total / max(count, 1)


class MicroBatches:
    """This rank's micro-batches of a step, on the device: (inputs (micro, T+1), dataset positions).
    `index_at(step, total_steps, global_batch)` gives the sequences the method trains on at that
    step. `host_s` sums the host time spent choosing and gathering them (the bench reports it)."""

    def __init__(self, sequences, index_at, micro: int, n_micro: int, dist: Dist, seed: int, dev):
        self.sequences, self.index_at, self.micro, self.n_micro = sequences, index_at, micro, n_micro
        self.dist, self.seed, self.dev, self.host_s = dist, seed, dev, 0.0

    def __call__(self, step: int, total_steps: int):
        t0 = time.perf_counter()
        index = self.index_at(step, total_steps, self.micro * self.n_micro * self.dist.world)
        for ids in sample_ids(step, self.micro, self.n_micro, self.dist, len(index), self.seed):
            seq_ids = index[ids]
            x = torch.from_numpy(self.sequences[seq_ids].astype(np.int64)).to(self.dev, non_blocking=True)
            self.host_s += time.perf_counter() - t0
            yield x, seq_ids
            t0 = time.perf_counter()


def autocast_for(dev):
    """bf16 autocast on GPU; full precision on CPU."""
    if dev.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return lambda: torch.autocast("cpu", enabled=False)


def compiled_trunk(model, dist: Dist, compile_: bool):
    """The student's hidden-state network as the loop runs it: DDP-wrapped over several
    processes, compiled on GPU when the config asks."""
    net = models.Trunk(model)
    net = torch.nn.parallel.DistributedDataParallel(net) if dist.world > 1 else net
    return torch.compile(net) if compile_ and next(model.parameters()).is_cuda else net


def forward_backward(net, objective, batches, step: int, total_steps: int, n_micro: int, dist: Dist, autocast,
                     model, grad_clip: float) -> tuple[dict[str, float], float]:
    """The body of one step before the update: every micro-batch's loss and gradients
    (accumulated, DDP's all-reduce on the last), then clipping. Returns the logged parts and the
    gradient norm on the host, in the step's one device-to-host copy."""
    acc: dict = {}  # the step's logged parts, summed on the device over its micro-batches
    for a, (x, seq_ids) in enumerate(batches):
        sync = a == n_micro - 1 or dist.world == 1
        ctx = net.no_sync() if (dist.world > 1 and not sync) else contextlib.nullcontext()
        with ctx, autocast():
            loss, parts = objective(net, x, seq_ids, step, total_steps)
            (loss / n_micro).backward()
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + (v.detach() if torch.is_tensor(v) else v) / n_micro
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return to_host(acc, gnorm)


def optimizer_step(opt, sched) -> None:
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def train(model, data: Shard, objective, out_dir, tcfg: Training, budget_flops: float, seed: int,
          indices=None, val: Shard | None = None, tokenizer=None, extra: dict | None = None, run_key: str = "",
          expected_steps: int | None = None, log=print) -> dict:
    """Train `model` on `data` until the FLOPs budget is spent; resumable. `indices`: train only
    on these sequences (an array, or `(step, total_steps, global_batch) -> array` for a method
    whose data changes by phase).
    Returns the summary also written to out_dir/summary.json (plus `extra`). `run_key` names the
    setup (the job key): a resume checkpoint from another setup is set aside, not resumed.
    `expected_steps`: the run plan's step count (lsap.training.plan); a loop that would train another
    number (another world size, another model) refuses to start."""
    out = Path(out_dir)
    dist = Dist.from_env()
    dev = dist.device
    models.enable_tf32()
    model.to(dev).train()
    micro, n_micro = tcfg["micro_batch"], plan.accumulation(tcfg, dist.world)
    seq_len = data.seq_len
    tokens_per_step = micro * n_micro * dist.world * seq_len
    if len(data) < micro:
        raise TrainingError(f"{data.path} holds {len(data)} sequences of {seq_len + 1} tokens, fewer than one "
                            f"micro-batch ({micro}): lower training.micro_batch or shards.seq_len, or add documents "
                            f"to the corpus")
    objective.bind(model)
    train_fpt, teacher_fpt = models.train_flops_per_token(model), objective.teacher_flops_per_token
    flops_per_token = train_fpt + teacher_fpt * objective.teacher_fraction  # average over the run
    total_steps = plan.steps(budget_flops, flops_per_token, tokens_per_step)
    if expected_steps is not None and total_steps != expected_steps:
        raise TrainingError(f"{out}: the loop would train {total_steps} steps ({dist.world} processes, "
                            f"{flops_per_token:.4g} FLOPs/token), the run plan says {expected_steps}: run it with "
                            f"compute.gpus processes (torchrun --nproc_per_node) as the config says")
    if total_steps < 1:
        raise TrainingError(f"budget {budget_flops:.3g} FLOPs is less than one step "
                            f"({flops_per_token * tokens_per_step:.3g}): raise the budget or shrink the batch")
    if dist.main:
        log(f"[train] {objective.name}: {total_steps} steps of {tokens_per_step} tokens on {dist.world} "
            f"processes ({dev.type})")
    ckpt_steps = {max(1, round(f * total_steps)): f for f in tcfg["checkpoint_fractions"]}
    all_seqs = np.arange(len(data))
    fixed = all_seqs if indices is None else np.asarray(indices)
    index_at = indices if callable(indices) else (lambda *_: fixed)

    def step_flops(s: int) -> float:
        return tokens_per_step * (train_fpt + (teacher_fpt if objective.teacher_active(s, total_steps) else 0))

    opt = torch.optim.AdamW(model.parameters(), lr=tcfg["lr"], betas=tuple(tcfg["betas"]),
                            weight_decay=tcfg["weight_decay"], fused=dev.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total_steps, tcfg["warmup_frac"], tcfg["min_lr_frac"]))
    step = 0
    key = f"{run_key}|{objective.name}|{total_steps}|{tokens_per_step}|{seed}|{len(data)}"
    # locked before its state is read: a rerun must not move aside the folder an orphan still trains into
    lock = resume.lock_run_folder(out, log) if dist.main else None  # held until this process ends
    state = resume.start_state(out, key, dev, dist.rank, lock, log)  # rank 0's decision on every rank
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step = state["step"]
        state = None  # the loaded copies are in the model and optimiser now
        log(f"[train] resuming {out} at step {step}/{total_steps}")
    saved = step  # the step of the last resume.pt written (0: none)
    if dist.main:
        resume.truncate_log(out / "log.jsonl", step)
    policy = resume.SavePolicy.for_job(tcfg["save_every_steps"], tcfg.get("save_every_minutes"))
    # whether the clock decides saves, as rank 0 sees it (each rank's own squeue may fail alone):
    # then every rank joins the broadcast of rank 0's decision at every step
    timed = bool(resume.from_rank0(policy.timed, dev))
    flops = sum(step_flops(s) for s in range(step))
    net = compiled_trunk(model, dist, bool(tcfg.get("compile")))
    autocast = autocast_for(dev)
    batches = MicroBatches(data.sequences, index_at, micro, n_micro, dist, seed, dev)
    progress = Progress(total_steps, step, enabled=dist.main)
    curves = Curves(out, dist.main and bool(tcfg.get("tensorboard")), step)
    t_last, t_start = time.perf_counter(), time.time()
    while step < total_steps:
        parts_sum, gnorm = forward_backward(net, objective, batches(step, total_steps), step, total_steps,
                                            n_micro, dist, autocast, model, tcfg["grad_clip"])
        if not (math.isfinite(parts_sum.get("loss", 0.0)) and math.isfinite(gnorm)):
            # checked before the update: a non-finite step is neither applied nor saved
            last = f"{resume.resume_path(out)} (step {saved})" if saved else "none (a rerun starts at step 0)"
            raise TrainingError(f"{out}: non-finite loss ({parts_sum.get('loss')}) or gradient norm ({gnorm}) "
                                f"at step {step} with lr {sched.get_last_lr()[0]:.3g} (peak training.lr "
                                f"{tcfg['lr']}); not applied, not saved. Last good checkpoint: {last}. Lower "
                                f"training.lr or check the data, then rerun the same command.")
        optimizer_step(opt, sched)
        flops += step_flops(step)
        step += 1
        now = time.perf_counter()
        tok_s = tokens_per_step / (now - t_last)
        t_last = now
        # time and total steps in every line: how far a job is, and when it ends, from its log alone
        record = {"step": step, "total_steps": total_steps, "time": round(time.time(), 3),
                  "elapsed_s": round(time.time() - t_start, 3), "tokens": step * tokens_per_step, "flops": flops,
                  "lr": sched.get_last_lr()[0], "grad_norm": gnorm, "tok_s": tok_s, **parts_sum}
        if step in ckpt_steps and val is not None:
            record["val_loss"] = eval_loss(
                model, val, tcfg["eval_sequences"], micro, dev, autocast)
        progress.update(record)
        save = step in ckpt_steps or step == total_steps or dist.agree(policy.due(step, time.monotonic()), timed)
        if dist.main:
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            curves.add(record)
            if step in ckpt_steps:
                with atomic_dir(layout.checkpoint(out, ckpt_steps[step])) as tmp:
                    # the evaluation checkpoint in the precision training computes in (bf16 on GPU)
                    checkpoints.save(model, tmp, models.inference_dtype(dev) if dev.type == "cuda" else None,
                                     tokenizer=tokenizer)
            if save:
                policy.saved(time.monotonic(), resume.save(out, model, opt, sched, step, key))
                saved = step
        dist.barrier()
    progress.close()
    curves.close()
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line]
    summary = {"steps": total_steps, "tokens": total_steps * tokens_per_step, "flops": flops,
               "training_flops": total_steps * tokens_per_step * train_fpt, "teacher_flops": flops - total_steps
               * tokens_per_step * train_fpt,
               "flops_per_token": flops_per_token, "teacher_flops_per_token": teacher_fpt,
               "params": models.n_params(model), "budget_flops": budget_flops, "objective": objective.name,
               "final_val_loss": _last_val(records), "tok_s_median": float(np.median([r["tok_s"] for r in records])),
               "unigram_entropy": data.manifest["unigram_entropy"],
               # which text it read: the tests check that no student read its teachers' split
               "data_split": data.manifest.get("split"), "data_sha256": data.manifest.get("sha256"),
               **_means(records), **(extra or {})}
    if dist.main:
        write_json(out / "summary.json", summary)
    return summary


def _last_val(records: list[dict]):
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    return vals[-1] if vals else None


def _means(records: list[dict]) -> dict:
    """Run means of the per-step quantities a method logs (e.g. LSAP's targets per position)."""
    from lsap.methods import OBJECTIVES

    keys = {k for kind in OBJECTIVES.values() for k in kind.summary_keys} & {k for r in records for k in r}
    return {f"mean_{k}": float(np.mean([r[k] for r in records if k in r])) for k in sorted(keys)}
