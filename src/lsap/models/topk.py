"""An exact top-k of a masked distribution over a large vocabulary, from the logits as they come.

LSAP's candidates are the k largest surrogate logits among the columns that may be proposed
(Σ∩, less the position's true token), with their log-probabilities under the surrogate's own
distribution (log-sum-exp over every column) or under the one renormalised after masking
(log-sum-exp over the proposable columns only). `masked_topk` computes exactly that without a
float32 copy of the logits, a masked copy or a host sync:

  level 1  per row, the log-sum-exp (accumulated in float32, float64 for float64 logits) and the
           maximum of every block of `block` columns over the proposable ones: two reductions
           that read the logits in their own dtype (bf16 on GPU), the mask applied per element;
  level 2  the k blocks with the largest maxima, gathered ((rows, k, block): ~5 % of the
           vocabulary at 151,936 columns), plus the columns past the last whole block, masked
           again, and their top k.

Level 2 is exact: an element among the top k lies in a block whose maximum is at least its
value, and fewer than k blocks can have a larger maximum, so the k blocks with the largest
maxima hold the top k's values (ties: the same values; which of equal columns is returned is
unspecified, as for `torch.topk`).

On a GPU the two-level chunk function is compiled (`compiled_chunk`): the masking, the upcast and
the exponentials fuse into the reductions. Eager (CPU) one level is faster (at the CPU bench's
3,072 columns the two-level form took 2.7x the time of the step it replaced): a masked copy of
one chunk of rows (`fused_nll.chunk_rows`), never of the whole (N, V), and one top-k. Both forms
are tested eagerly against the float64 definition.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch

from lsap.models.fused_nll import chunk_rows

BLOCK = 512

ChunkFn = Callable[..., "tuple[torch.Tensor, torch.Tensor]"]


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def chunk_topk(z: torch.Tensor, k: int, keep: torch.Tensor, exclude: torch.Tensor, renormalise: bool,
               block: int, two_level: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of rows: z (c, V) logits, keep (V,) bool, exclude (c,) int64 (a column, or any
    negative number for none) -> (logp (c, k') float32/float64, columns (c, k') int64), k' = min(k, V).

    Eager (`two_level=False`, CPU): one masked copy of the chunk, the true token set to -inf in
    it, one top-k over it. `two_level=True` (compiled, GPU): the mask is a pointwise expression the
    compiler fuses into the two reductions (log-sum-exp, block maxima), and only the k best blocks
    are gathered: nothing of the chunk's size is written."""
    c, v = z.shape
    if not two_level:
        zm = torch.where(keep, z, -math.inf)  # a scalar: no host-to-device copy
        at = exclude.clamp_min(0)[:, None]
        zm.scatter_(1, at, torch.where(exclude[:, None] >= 0, -math.inf, zm.gather(1, at)))
        lse = torch.logsumexp((zm if renormalise else z).to(_acc(z.dtype)), -1)
        val, cols = zm.topk(min(k, v), -1)
        return _logp(val, lse), cols
    nb = v // block
    whole = nb * block
    col = torch.arange(v, device=z.device)
    ok = keep[None, :] & (col[None, :] != exclude[:, None])              # (c, V) bool: fused when compiled
    zm = torch.where(ok, z, -math.inf)
    lse = torch.logsumexp((zm if renormalise else z).to(_acc(z.dtype)), -1)
    kb = min(k, nb)
    if kb * block >= whole:  # the k best blocks would be all of them: one level
        kb = 0
    parts = []
    if kb:
        bmax = zm[:, :whole].view(c, nb, block).amax(-1)                 # (c, nb)
        blocks = bmax.topk(kb, -1).indices                               # (c, kb)
        g = z[:, :whole].view(c, nb, block).gather(1, blocks[..., None].expand(c, kb, block))
        ar = torch.arange(block, device=z.device)
        g_ok = keep[:whole].view(nb, block)[blocks] & ~(
            (blocks == torch.div(exclude, block, rounding_mode="floor")[:, None])[..., None]
            & (ar == exclude.remainder(block)[:, None])[:, None, :])
        parts.append(torch.where(g_ok, g, -math.inf).view(c, kb * block))
        if whole < v:  # the columns past the last whole block always reach level 2
            parts.append(zm[:, whole:])
    cand = torch.cat(parts, 1) if len(parts) > 1 else parts[0] if parts else zm
    val, j = cand.topk(min(k, cand.shape[1]), -1)
    if kb:
        main = j < kb * block
        blk = blocks.gather(1, torch.div(j, block, rounding_mode="floor").clamp_max(kb - 1))
        cols = torch.where(main, blk * block + j.remainder(block), whole + j - kb * block)
    else:
        cols = j
    return _logp(val, lse), cols


def _logp(val: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """A slot without a proposable column (or a row without any) is -inf, never nan."""
    val = val.to(lse.dtype)
    return torch.where(val == -math.inf, val, val - lse[:, None])


def masked_topk(z: torch.Tensor, k: int, keep: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
                renormalise: bool = False, block: int = BLOCK, rows: int | None = None,
                chunk_fn: ChunkFn | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """z (N, V) logits in any float dtype (not modified) -> (logp (N, k), columns (N, k) int64),
    largest first: the k largest logits among the columns with `keep` (default all) other than
    `exclude` (N,) (one column per row; negative: none), with log-probabilities under softmax(z)
    (`renormalise=False`) or under softmax restricted to those columns (`renormalise=True`).
    logp is float32 (float64 for float64 logits); slots beyond the proposable columns hold -inf
    and an arbitrary column."""
    n, v = z.shape
    dev = z.device
    keep = torch.ones(v, dtype=torch.bool, device=dev) if keep is None else keep.to(dev, torch.bool)
    if keep.shape != (v,):
        raise ValueError(f"keep has shape {tuple(keep.shape)}, the logits {v} columns")
    exclude = torch.full((n,), -1, dtype=torch.long, device=dev) if exclude is None else exclude.to(dev).long()
    fn = chunk_fn or chunk_topk
    rows = rows or chunk_rows(v, dev)
    logp = torch.full((n, k), -math.inf, dtype=_acc(z.dtype), device=dev)
    cols = torch.zeros((n, k), dtype=torch.long, device=dev)
    for a in range(0, n, rows):
        r = slice(a, min(a + rows, n))
        lp, c = fn(z[r], k, keep, exclude[r], renormalise, block)
        logp[r, : lp.shape[1]], cols[r, : c.shape[1]] = lp, c
    return logp, cols


def two_level(*args):
    """`chunk_topk` in its two-level form."""
    return chunk_topk(*args, two_level=True)


def compiled_chunk() -> ChunkFn:
    """`chunk_topk`'s two-level form compiled (GPU): the first call that fails to compile falls
    back to eager for good, with a warning, so a compiler problem costs speed, never a run."""
    compiled = torch.compile(two_level, dynamic=False)
    state = {"fn": compiled}

    def run(*args):
        if state["fn"] is compiled:
            try:
                return compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compiler failure: the eager path is exact
                warnings.warn(f"topk: torch.compile failed ({type(e).__name__}: {e}); eager from now on", stacklevel=2)
                state["fn"] = chunk_topk
        return state["fn"](*args)

    run.state = state
    return run


def reference_topk(z: torch.Tensor, k: int, keep: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
                   renormalise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition, in float64 over the whole vocabulary (tests): a stable descending sort, so
    equal logits come in column order."""
    n, v = z.shape
    zd = z.double()
    keep = torch.ones(v, dtype=torch.bool) if keep is None else keep.bool()
    exclude = torch.full((n,), -1, dtype=torch.long) if exclude is None else exclude.long()
    ok = keep[None, :] & (torch.arange(v)[None, :] != exclude[:, None])
    zm = torch.where(ok, zd, -math.inf)
    lse = torch.logsumexp(zm if renormalise else zd, -1, keepdim=True)
    val, cols = zm.sort(dim=-1, descending=True, stable=True)
    val, cols = val[:, :k], cols[:, :k]
    logp = torch.where(val == -math.inf, val, val - lse)
    if k > v:
        logp = torch.cat([logp, torch.full((n, k - v), -math.inf, dtype=logp.dtype)], 1)
        cols = torch.cat([cols, torch.zeros((n, k - v), dtype=cols.dtype)], 1)
    return logp, cols
