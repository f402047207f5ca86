"""Loss functions, pure: logits (or hidden states) and targets in, a scalar and its parts out."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in float32 (bf16 logits are upcast inside the loss)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


class CrossEntropy:
    """The baseline objective: the student's own next-token NLL, no teacher."""

    name = "ce"
    teacher_flops_per_token = 0

    def __call__(self, model, inputs: torch.Tensor, targets: torch.Tensor, progress: float):
        loss = ce(model(input_ids=inputs).logits, targets)
        return loss, {"ce": loss.detach()}
