"""Weighted NLL of many targets per position from hidden states, in chunks of tokens.

Every objective of this repo is a weighted sum of −log p_θ(v | x_<t) = lse_t − z_t,v over some
targets v: CE puts weight 1 on the next token, LSAP adds the surrogate's proposals, KD and SALT
add a dense teacher distribution. All of them share one log-sum-exp per position, so the loss is

    L = Σ_t Σ_k w_tk (lse_t − z_t,ids_tk) + Σ_t Σ_v d_tv (lse_t − z_t,v)   (v over all or some columns)

computed from the final hidden states h and the LM head W chunk by chunk (logits z = h·Wᵀ live
for one chunk only; under bf16 autocast the matmuls run in bf16 and the logits are upcast to
float32 for the log-sum-exp). The gradient is computed in the same pass (the trick of
Liger-Kernel's fused linear cross-entropy): dL/dz = p·(Σ_k w + Σ_v d) − w (scattered) − d, so
backward only scales stored gradients and no full-vocabulary tensor outlives its chunk.
"""

from __future__ import annotations

from typing import Callable

import torch

# float32 logits per chunk: 2^25 elements = 128 MiB whatever the vocabulary size (CPU);
# 2^28 = 1 GiB on a GPU, where small chunks cost more than they save: at 8,192 tokens × 100,352
# the H200 took 64 ms for the loss in 25 chunks of 334 rows (thin matmuls, one fp32 grad_W update
# per chunk) against 25 ms for the naive full-vocabulary loss (bench/NOTES.md)
CHUNK_ELEMENTS = 1 << 25
CHUNK_ELEMENTS_GPU = 1 << 28


def chunk_rows(n_columns: int, device: torch.device) -> int:
    """Rows of (rows, n_columns) float32 logits to hold at once on `device`."""
    return max(1, (CHUNK_ELEMENTS_GPU if device.type == "cuda" else CHUNK_ELEMENTS) // n_columns)

# rows -> (rows, V) float32 target weights, or ((rows, S) weights, (S,) column ids) for a teacher
# that only covers some of the vocabulary (KD through Σ∩)
DenseFn = Callable[[slice], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


class _FusedNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, W, ids, weights, dense, chunk, stats, dtype):
        n, h_dtype = h.shape[0], h.dtype
        # the head's matmuls in `dtype` (bf16 under autocast: the largest matmul of a 100k-vocabulary
        # model), the logits upcast per chunk so log-sum-exp and the loss accumulate in fp32
        h, Wc = h.to(dtype), W.to(dtype)
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_h = torch.empty(h.shape, dtype=h_dtype, device=h.device) if need_grad else None
        grad_W = torch.zeros(W.shape, dtype=torch.float32 if W.dtype != torch.float64 else W.dtype,
                             device=W.device) if need_grad else None
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        total = torch.zeros((), dtype=acc, device=h.device)
        sums = {k: torch.zeros((), dtype=acc, device=h.device)
                for k in ("nll0", "aux", "dense", "aux_positions", "top_in_aux")}
        for a in range(0, n, chunk):
            rows = slice(a, min(a + chunk, n))
            z = (h[rows] @ Wc.T).to(acc)
            lse = torch.logsumexp(z, dim=-1)
            nll = lse[:, None] - z.gather(1, ids[rows])                  # (c, K)
            w = weights[rows].to(acc)
            if stats is not None and ids.shape[1] > 1:
                # how often the model's own top prediction is among the extra targets (before z is reused)
                has = w[:, 1:] > 0
                sums["aux_positions"] += has.any(1).sum()
                sums["top_in_aux"] += ((ids[rows][:, 1:] == z.argmax(-1, keepdim=True)) & has).any(1).sum()
            total += (w * nll).sum()
            sums["nll0"] += nll[:, 0].sum()
            sums["aux"] += (nll[:, 1:] * (w[:, 1:] > 0)).sum()
            wsum = w.sum(1)
            d = dense(rows) if dense is not None else None
            if d is not None:
                d, cols = d if isinstance(d, tuple) else (d, None)
                d = d.to(acc)
                dense_nll = (d * (lse[:, None] - (z if cols is None else z[:, cols]))).sum()
                total += dense_nll
                sums["dense"] += dense_nll
                wsum = wsum + d.sum(1)
            if need_grad:
                # softmax in place over the chunk's logits, then the target terms
                dz = z.sub_(lse[:, None]).exp_().mul_(wsum[:, None])
                dz.scatter_add_(1, ids[rows], -w)
                if d is not None:
                    if cols is None:
                        dz.sub_(d)
                    else:
                        dz.scatter_add_(1, cols.expand(d.shape[0], -1), -d)  # 10x index_add_ on CPU
                dz = dz.to(dtype)
                grad_h[rows] = (dz @ Wc).to(h_dtype)
                grad_W += (dz.T @ h[rows]).to(grad_W.dtype)
        if stats is not None:
            stats.update({k: s.detach() for k, s in sums.items()})
        ctx.save_for_backward(grad_h, grad_W.to(W.dtype) if grad_W is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_W = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None and ctx.needs_input_grad[0] else None
        gw = grad_W * grad_out.to(grad_W.dtype) if grad_W is not None and ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None, None, None, None


def fused_nll(h: torch.Tensor, W: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor,
              dense: DenseFn | None = None, chunk: int | None = None, stats: dict | None = None) -> torch.Tensor:
    """Σ weights·NLL(ids) (+ Σ dense·NLL over the vocabulary) for hidden states h (N, H), head W
    (V, H), ids (N, K) int64 with column 0 the next token, weights (N, K) (0 = unused slot).

    `stats` (optional dict) receives the unweighted sums: nll0 (column 0: plain CE), aux (the
    other columns where weight > 0) and dense (the weighted dense term), for logging; and the
    positions with an extra target (aux_positions) and those where the model's argmax is one of
    them (top_in_aux).
    """
    if h.dim() != 2 or ids.shape != weights.shape or ids.shape[0] != h.shape[0]:
        raise ValueError(f"shapes: h {tuple(h.shape)} must be (N, H), ids {tuple(ids.shape)} and weights "
                         f"{tuple(weights.shape)} (N, K)")
    chunk = chunk or chunk_rows(W.shape[0], h.device)
    dev = h.device.type
    # under autocast the head runs in its dtype even when the final norm hands over fp32 states
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
    with torch.autocast(dev, enabled=False):
        return _FusedNLL.apply(h, W, ids, weights, dense, chunk, stats, dtype)
