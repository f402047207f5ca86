"""The run plan, computed once from the config: how many steps a FLOPs budget buys, how many
sequences a step reads, which sequences a run visits, and what each token costs — without
building or loading a model (shapes come from configs; parameters are counted on the meta device).

The training loop, the targets cache, the selection pool and the job keys all read this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lsap.config_types import RunConfig
from lsap.models import flops


@dataclass(frozen=True)
class RunPlan:
    steps: int
    global_batch: int                # sequences per optimiser step, all ranks
    seq_len: int
    train_flops_per_token: int       # 6·N of the trained model
    teacher_flops_per_token: int     # 2·N_teacher on a step its teacher runs
    teacher_fraction: float          # share of the steps on which it runs

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step


def steps(budget_flops: float, flops_per_token: float, tokens_per_step: int) -> int:
    """Steps of a run: the largest whole number the FLOPs budget pays for."""
    return int(budget_flops // (flops_per_token * tokens_per_step))


def budget_for_steps(spec: dict, vocab_size: int, seq_len: int, batch: int, n_steps: int,
                     teacher_fpt: int = 0) -> float:
    """The inverse of `steps`: a budget that buys `n_steps` steps of a model built from `spec`
    (plus a teacher's 2·N per token), half a step to spare so rounding never loses one."""
    per_token = flops.model_flops_per_token(spec, vocab_size, seq_len) + teacher_fpt
    return float(per_token * batch * seq_len * (n_steps + 0.5))


def world_size(cfg: dict) -> int:
    return max(1, cfg["compute"]["gpus"])


def accumulation(training: dict, world: int) -> int:
    """Micro-batches per rank per step: from `training.global_batch` where the config sets it (the
    same run on 4 or 8 GPUs), else `training.grad_accum`. The one place this is decided."""
    if training.get("global_batch") is None:
        return training["grad_accum"]
    per = training["micro_batch"] * world
    if training["global_batch"] % per:
        raise ValueError(f"training.global_batch {training['global_batch']} is not a multiple of training.micro_batch "
                         f"{training['micro_batch']} x {world} GPUs ({per}): change one of them")
    return training["global_batch"] // per


def global_batch(cfg: dict) -> int:
    t = cfg["training"]
    return t["micro_batch"] * accumulation(t, world_size(cfg)) * world_size(cfg)


def make(cfg: RunConfig, budget_flops: float, train_fpt: int, teacher_fpt: int, teacher_fraction: float,
         seq_len: int) -> RunPlan:
    batch = global_batch(cfg)
    n = steps(budget_flops, train_fpt + teacher_fpt * teacher_fraction, batch * seq_len)
    return RunPlan(n, batch, seq_len, train_fpt, teacher_fpt, teacher_fraction)


def visited(plan: RunPlan, cfg: dict, n_data: int, seed: int) -> np.ndarray:
    """Every dataset position a run of this plan reads, over all ranks (sorted): what a cache of
    per-sequence teacher outputs must hold. The ranks' micro-batches of a step tile its global
    samples, so the run reads global samples 0 … steps·B − 1, in the sampler's epoch order."""
    from lsap.data.sampler import epoch_permutation

    n_samples = plan.steps * global_batch(cfg)
    if n_samples >= n_data:
        return np.arange(n_data, dtype=np.int64)
    return np.sort(epoch_permutation(seed, 0, n_data)[:n_samples]).astype(np.int64)


# What a training job spends besides its steps (the forecast adds it, `lsap plan` states it): the
# start-up of each submission (processes, imports, torch.compile, loading shards and teachers;
# assumed: no cluster measurement yet) and the writes of its saves, at a stated write rate of one
# node to the shared filesystem: each resume state (fp32 weights + AdamW's two moments, 12 B per
# parameter) and each checkpoint (the weights: bf16 on GPU, fp32 on CPU)
FIXED_COSTS = {"start_up_s": {"cpu": 30, "gpu": 600}, "write_bytes_per_s": 1e9,
               "resume_bytes_per_param": 12, "checkpoint_bytes_per_param": {"cpu": 4, "gpu": 2}}


def fixed_seconds(cfg: dict, train_min: float, params: int, n_steps: int) -> tuple[int, float, float]:
    """(saves, seconds writing them and the checkpoints, start-up seconds) of one training job of
    `train_min` minutes of steps: a resume state every save_every_minutes and every save_every_steps."""
    t, dev = cfg["training"], "gpu" if cfg["compute"]["gpus"] else "cpu"
    f = FIXED_COSTS
    saves = (math.ceil(train_min / t["save_every_minutes"]) if t.get("save_every_minutes") else 0) \
        + (n_steps // t["save_every_steps"] if t.get("save_every_steps") else 0)
    write = saves * params * f["resume_bytes_per_param"] \
        + len(t["checkpoint_fractions"]) * params * f["checkpoint_bytes_per_param"][dev]
    return saves, write / f["write_bytes_per_s"], float(f["start_up_s"][dev])
