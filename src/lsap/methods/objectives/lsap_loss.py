"""LSAP's loss (NOTES §1.1): CE + λ(t)·the NLL of each of the surrogate's candidates above α, and
its controls (random targets, uniform mass). Imported by its plugin's builder (lsap.py), not by
the registry: it needs torch."""

from __future__ import annotations

import math

import torch

from lsap.methods.losses import CrossEntropy, _full
from lsap.models.fused_nll import fused_nll
from lsap.models.surrogate import select

NORMALISERS = ("total_targets", "mean", "literal", "split")
PROPOSALS = ("surrogate", "unigram", "uniform")


def cosine_lambda(progress: float) -> float:
    """λ annealed from 1 to 0 over the run (LSAP's "0.05-anneal")."""
    return 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def lsap_normaliser(kind: str, n_positions: int, n_aux: float) -> float:
    """NOTES §1.1 #2: the paper's 1/(N·|v|) is undefined at |v| = 0 and ambiguous.
    total_targets: N + Σ|v_t| (every NLL term weighs the same; default);
    mean: N·mean_t|v_t| (= Σ|v_t|); literal: N·|v| with |v| = Σ_t|v_t| the batch's target count.
    The last two fall back to N when a batch has no auxiliary target. (split: CE and the auxiliary
    mean normalised apart, in LSAP.__call__.)"""
    # n_aux may be a device tensor: torch.where keeps the choice on the device (no host sync)
    pick = torch.where if torch.is_tensor(n_aux) else (lambda c, a, b: a if c else b)
    if kind == "total_targets":
        return n_positions + n_aux
    if kind == "mean":
        return pick(n_aux > 0, n_aux, n_positions)
    if kind == "literal":
        return pick(n_aux > 0, n_positions * n_aux, n_positions)
    if kind == "split":
        return n_positions
    raise ValueError(f"normaliser must be one of {NORMALISERS}, not '{kind}'")


class LSAP(CrossEntropy):
    """CE + λ(t)·Σ_t Σ_{v∈v_t} −log p_θ(v | x_<t), v_t the surrogate's candidates above α.

    `candidates(inputs, targets, seq_ids) -> (ids, logp)` is either the online surrogate or the
    cache; both return the same top-k, so α only filters here. λ(t) = lambda_scale × (1, or the
    cosine anneal). `shared_target` (a (V,) bool tensor: the student ids in Σ∩), when given, drops
    the auxiliary terms at positions whose true token is outside Σ∩ (the authors' code).

    `proposals` swaps what the surrogate's count of candidates is spent on, for the controls that
    tell information from regularisation: `unigram` draws as many targets per position from the
    training unigram (`unigram`: (V,) probabilities; a draw equal to the true token is redrawn
    once), `uniform` spreads the same mass λ·|v_t| evenly over the vocabulary (label smoothing at
    LSAP's off-target mass, position by position)."""

    name = "lsap"
    teacher_fraction = 1.0

    def __init__(self, candidates, alpha: float, normaliser: str = "total_targets", anneal: bool = False,
                 teacher_flops_per_token: int = 0, lambda_scale: float = 1.0, proposals: str = "surrogate",
                 shared_target: torch.Tensor | None = None, unigram: torch.Tensor | None = None):
        lsap_normaliser(normaliser, 1, 0)  # fail early on a bad name
        if proposals not in PROPOSALS or (proposals != "surrogate" and unigram is None):
            raise ValueError(f"proposals must be one of {PROPOSALS} ('unigram' and 'uniform' need the training "
                             f"unigram), not '{proposals}'")
        self.candidates, self.alpha, self.normaliser, self.anneal = candidates, alpha, normaliser, anneal
        self.teacher_flops_per_token, self.lambda_scale, self.proposals = teacher_flops_per_token, lambda_scale, proposals
        self.shared_target, self.unigram = shared_target, unigram

    def _draw(self, targets: torch.Tensor, k: int, step: int, seq_ids) -> torch.Tensor:
        """(B, T, k) ids from the unigram, a function of (step, the batch's first sequence), so a
        resumed run draws the same and ranks and micro-batches draw apart; a draw equal to the
        true token is redrawn once."""
        first = int(seq_ids[0]) if seq_ids is not None and len(seq_ids) else 0
        g = torch.Generator(device="cpu").manual_seed(1_000_003 * step + first)
        n = targets.numel() * k
        ids = torch.multinomial(self.unigram, n, replacement=True, generator=g).view(*targets.shape, k)
        again = torch.multinomial(self.unigram, n, replacement=True, generator=g).view(*targets.shape, k)
        ids = torch.where(ids == targets.cpu()[..., None], again, ids)
        return ids.to(targets.device)

    def __call__(self, net, x, seq_ids, step, total_steps):
        inputs, targets = x[:, :-1], x[:, 1:]
        cand_ids, cand_logp = self.candidates(inputs, targets, seq_ids)
        valid = select(cand_logp, self.alpha)
        if self.shared_target is not None:
            valid = valid & self.shared_target.to(targets.device)[targets][..., None]
        lam = self.lambda_scale * (cosine_lambda(step / total_steps) if self.anneal else 1.0)
        h = self._hidden(net, inputs)
        n, k = h.shape[0], cand_ids.shape[-1]
        if self.proposals == "unigram":
            cand_ids = self._draw(targets, k, step, seq_ids)
        dt = _full(h, (), 0).dtype
        count = valid.reshape(n, k).to(dt).sum(1)  # |v_t|
        n_aux = count.sum()  # stays on the device: no sync per micro-batch
        ids = torch.cat([targets.reshape(n, 1), cand_ids.reshape(n, k)], 1)
        on = valid.reshape(n, k).to(dt) * (self.proposals != "uniform")
        dense = None
        if self.normaliser == "split":  # CE/N + λ·(mean auxiliary NLL): the authors' trainer
            weights = torch.cat([_full(h, (n, 1), 1.0 / n), lam * on / n_aux.clamp(min=1.0)], 1)
            per_pos = lam * count / n_aux.clamp(min=1.0)
            norm = 1.0
        else:
            weights = torch.cat([_full(h, (n, 1), 1.0), lam * on], 1)
            per_pos = lam * count
            norm = lsap_normaliser(self.normaliser, n, n_aux)
        if self.proposals == "uniform":
            real = self.unigram.shape[0]  # the tokenizer's entries (the head may have padding rows)
            cols = torch.arange(real, device=h.device)
            dense = lambda r: ((per_pos[r] / real)[:, None].expand(-1, real), cols)  # noqa: E731
        stats = {}
        loss = fused_nll(h, self.head, ids, weights, dense=dense, stats=stats) / norm
        # the mean NLL of one unit of auxiliary target: per target, or per unit of the uniform mass
        aux_nll = stats["aux"] / n_aux.clamp(min=1.0) if dense is None else stats["dense"] / per_pos.sum().clamp(min=1e-30)
        return loss, {"loss": loss.detach(), "ce": stats["nll0"] / n,
                      "aux_nll": aux_nll, "targets_per_pos": n_aux / n, "lambda": lam,
                      # share of positions given a target, and of those, how often the student's own
                      # top prediction is one of them (the proposals then reinforce what it predicts)
                      "pos_with_targets": (count > 0).sum() / n,
                      "student_top_in_targets": stats["top_in_aux"] / stats["aux_positions"].clamp(min=1)}
