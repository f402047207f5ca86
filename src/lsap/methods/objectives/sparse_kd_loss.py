"""Sparse KD's loss: CE + λ·Σ_c p_s(c)·(−log p_θ(c)) over the cached candidates (sparse_kd.py has
the knobs and the builder). Imported by the builder: it needs torch."""

from __future__ import annotations

import math

import torch

from lsap.methods.losses import CrossEntropy, _full
from lsap.models.fused_nll import fused_nll


class SparseKD(CrossEntropy):
    name = "sparse_kd"
    teacher_fraction = 1.0

    def __init__(self, candidates, alpha: float, lambda_scale: float = 1.0, teacher_flops_per_token: int = 0):
        self.candidates, self.alpha, self.lambda_scale = candidates, alpha, lambda_scale
        self.teacher_flops_per_token = teacher_flops_per_token

    def __call__(self, net, x, seq_ids, step, total_steps):
        inputs, targets = x[:, :-1], x[:, 1:]
        cand_ids, cand_logp = self.candidates(inputs, targets, seq_ids)
        floor = math.log(self.alpha) if self.alpha > 0 else -math.inf
        h = self._hidden(net, inputs)
        n, k = h.shape[0], cand_ids.shape[-1]
        dt = _full(h, (), 0).dtype
        logp = cand_logp.reshape(n, k).to(dt)
        w = torch.where(logp > floor, self.lambda_scale * logp.exp(), 0.0)   # p_s(c), 0 off the candidates
        total = w.sum()
        ids = torch.cat([targets.reshape(n, 1), cand_ids.reshape(n, k)], 1)
        stats = {}
        loss = fused_nll(h, self.head, ids, torch.cat([_full(h, (n, 1), 1.0), w], 1), stats=stats) / (n + total)
        return loss, {"loss": loss.detach(), "ce": stats["nll0"] / n, "aux_nll": stats["aux"] / total.clamp(min=1e-30),
                      "aux_weight_per_pos": total / n}
