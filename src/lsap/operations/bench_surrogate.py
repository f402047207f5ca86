"""Where LSAP's overhead goes, for the bench: the surrogate's forward with and without the Σ∩ key
mask, the forward plus the top-k candidates, and the candidate step alone from fixed logits beside
the step it replaced (kept here, for comparison in the same run)."""

from __future__ import annotations

import math

import torch

from lsap import models
from lsap.models.fused_nll import chunk_rows
from lsap.models.surrogate import Surrogate
from lsap.models.topk import chunk_topk
from lsap.operations.timing import Timer


@torch.inference_mode()
def legacy_selection(sur: Surrogate, logits: torch.Tensor, targets: torch.Tensor):
    """The candidate step before `lsap.models.topk` (commit 86201aa), for comparison in the same run: per
    chunk of rows a float32 log-sum-exp copy, an additive-mask copy, the target masked through a
    host sync (nonzero), a top-k over the whole vocabulary."""
    b, t, v = logits.shape
    logits = logits.reshape(b * t, v)
    s_tgt = sur.b_to_s[targets].reshape(-1)
    ids = torch.empty(b * t, sur.top_k, dtype=torch.long, device=logits.device)
    logp = torch.empty(b * t, sur.top_k, dtype=torch.float32, device=logits.device)
    chunk = chunk_rows(v, logits.device)
    outside = sur.outside.to(logits.dtype)
    for a in range(0, b * t, chunk):
        r = slice(a, min(a + chunk, b * t))
        z = logits[r]
        lse = torch.logsumexp(z.float(), -1) if sur.probabilities == "surrogate" else None
        z = z + outside
        has = s_tgt[r] >= 0
        z[has.nonzero().squeeze(1), s_tgt[r][has]] = -math.inf
        if lse is None:
            lse = torch.logsumexp(z.float(), -1)
        val, idx = z.topk(sur.top_k, dim=-1)
        logp[r] = val.float() - lse[:, None]
        ids[r] = sur.s_to_b[idx].clamp_min(0)
    return ids.view(b, t, -1), logp.view(b, t, -1)


def bench_surrogate(dev, sur: Surrogate, x: torch.Tensor, iters: int = 5) -> dict:
    """Where LSAP's overhead goes: the surrogate's forward with the Σ∩ key mask (as runs call it),
    without a mask (causal only), the forward plus the top-k candidates, and the candidate step
    alone from fixed logits (`selection_ms`; `selection_legacy_ms`: the step it replaced)."""
    timer, inputs, targets = Timer(dev), x[:, :-1], x[:, 1:]

    @torch.inference_mode()
    def unmasked():
        with torch.autocast(dev.type, dtype=models.inference_dtype(dev), enabled=dev.type == "cuda"):
            return sur.forward(input_ids=sur.b_to_s[inputs].clamp_min(0)).logits
    logits = sur.logits(inputs)
    out = {"logits_masked_ms": 1000 * timer(lambda: sur.logits(inputs), 2, iters),
           "logits_causal_only_ms": 1000 * timer(unmasked, 2, iters),
           "candidates_ms": 1000 * timer(lambda: sur.candidates(inputs, targets), 2, iters),
           "selection_ms": 1000 * timer(lambda: sur.from_logits(logits, targets), 2, iters),
           "selection_legacy_ms": 1000 * timer(lambda: legacy_selection(sur, logits, targets), 2, iters)}
    (_, new), (_, old) = sur.from_logits(logits, targets), legacy_selection(sur, logits, targets)
    # the same candidates (ties aside): the same slots filled, the same logp in each
    fin = new > -math.inf
    out["selection_same_slots"] = bool(torch.equal(fin, old > -math.inf))
    out["selection_max_abs_diff_logp"] = float((new - old)[fin].abs().max()) if fin.any() else 0.0
    out["selection_compiled"] = sur.topk_chunk is not chunk_topk and sur.topk_chunk.state["fn"] is not chunk_topk
    return out
