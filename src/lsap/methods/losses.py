"""The loss every objective builds on: each owns the student's forward pass (hidden states from
a `models.Trunk`) and returns (loss, parts to log); all of them are weighted NLLs computed by
`fused_nll` from one log-sum-exp per position, so no full float32 logits tensor exists. Each
method's own loss lives beside its plugin (lsap/methods/objectives/<name>_loss.py).

A teacher's FLOPs are charged per student token on the steps it runs (`teacher_active`).
"""

from __future__ import annotations

import torch

from lsap.models.fused_nll import fused_nll


def _full(h: torch.Tensor, shape, value: float) -> torch.Tensor:
    """Target weights: float32 (float64 when the hidden states are, as in the exactness tests)."""
    return torch.full(shape, value, device=h.device, dtype=torch.float64 if h.dtype == torch.float64 else torch.float32)


class Objective:
    name = "ce"
    teacher_flops_per_token = 0
    teacher_fraction = 0.0  # share of the steps on which the teacher runs (for the budget)

    def bind(self, model) -> "Objective":
        self.head = model.get_output_embeddings().weight
        return self

    def teacher_active(self, step: int, total_steps: int) -> bool:
        return self.teacher_flops_per_token > 0

    def _hidden(self, net, inputs):
        h = net(inputs)
        return h.reshape(-1, h.shape[-1])


class CrossEntropy(Objective):
    """The baseline: the student's own next-token NLL, no teacher."""

    def __call__(self, net, x, seq_ids, step, total_steps):
        inputs, targets = x[:, :-1], x[:, 1:]
        h = self._hidden(net, inputs)
        n = h.shape[0]
        loss = fused_nll(h, self.head, targets.reshape(-1, 1), _full(h, (n, 1), 1.0)) / n
        return loss, {"loss": loss.detach(), "ce": loss.detach()}
