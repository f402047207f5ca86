"""Offline data selection with frozen LMs: MiniPLM's difference sampling and SALT_DS.

Both methods score every sequence of a shard once, then keep the highest-scoring ones:

    MiniPLM  r(x) = mean_t NLL_ref(x_t) − mean_t NLL_teacher(x_t)          keep the top α·n (α = 0.5)
    SALT_DS  S(x) = median_t of NLL_teacher(x_t) over x_t ∈ top_k(teacher)  keep the top m (k = 10)

MiniPLM (NOTES §1.3): r = log p_teacher(x) − log p_ref(x); with every sequence seq_len tokens long
the mean-loss difference ranks exactly like the summed log-ratio. SALT (§4, after eq. 10): "a
higher score indicating a higher likelihood to be selected ... we select the top-m scoring
sequences": high median loss = challenging, restricted to top-k tokens = still learnable.

SALT's eq. 10 multiplies non-top-k losses by 0 and leaves those zeros in the median (`keep`);
the text says those losses are "removed" before aggregating and §6 that unlearnable tokens are
"excluded from the aggregation" (`drop`, the default, as in config/schema.yaml). Under `keep` a
sequence with more than half its tokens outside the top k scores 0, which with a small teacher
ties much of the corpus; under `drop` a sequence with no top-k token at all scores −inf (last).

Scoring scatters: compute.scoring_parts jobs each score one batch-aligned range of the pool and
write it atomically at their end; a local gather joins them into the selection's scores, the
same bits a one-job run gives (same batches, same kernels), with a JSON beside them (FLOPs: 2·N
per token per model scored).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lsap import models
from lsap.data.scores import part_paths, part_ranges
from lsap.data.shards import Shard
from lsap.io.files import atomic_path, sha256_file, write_json
from lsap.models.fused_nll import CHUNK_ELEMENTS

ZEROS = ("keep", "drop")
ScoreFn = Callable[[object, torch.Tensor], torch.Tensor]  # (model(s), x (B, T+1)) -> (B,) scores


def _autocast(dev: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()


@torch.inference_mode()
def token_stats(model, x: torch.Tensor, top_k: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x (B, T+1) token ids -> (nll (B, T) float32 of x[:, 1:] given its prefix, and when top_k > 0
    whether each target is among the model's top_k logits (B, T) bool; else None).

    The head is applied to the final hidden states chunk by chunk, so float32 logits exist for
    one chunk only: NLL = logsumexp(z) − z_target, no softmax. Top-k membership compares the
    target's logit with the k-th largest *value* (z_target ≥ it ⇔ fewer than k logits exceed
    z_target), so it does not depend on how topk breaks ties between indices (bf16 logits tie
    often): a target tied with the k-th counts as inside. 3× cheaper on CPU than counting ranks."""
    b, t = x.shape[0], x.shape[1] - 1
    targets = x[:, 1:].reshape(-1)
    with _autocast(x.device):
        h = model.model(input_ids=x[:, :-1]).last_hidden_state
    h = h.reshape(b * t, -1)
    W = model.get_output_embeddings().weight.to(h.dtype)
    cap = getattr(model.config, "final_logit_softcapping", None)  # Gemma-style heads
    nll = torch.empty(b * t, dtype=torch.float32, device=x.device)
    in_top = torch.empty(b * t, dtype=torch.bool, device=x.device) if top_k else None
    chunk = max(1, CHUNK_ELEMENTS // W.shape[0])
    for a in range(0, b * t, chunk):
        r = slice(a, min(a + chunk, b * t))
        z = (h[r] @ W.T).float()
        if cap:
            z = torch.tanh(z / cap) * cap
        z_t = z.gather(1, targets[r, None])
        nll[r] = torch.logsumexp(z, -1) - z_t.squeeze(1)
        if top_k:
            in_top[r] = z_t.squeeze(1) >= z.topk(top_k, dim=1, sorted=False).values.amin(1)
    return nll.view(b, t), (in_top.view(b, t) if top_k else None)


def miniplm_score(model_pair, x: torch.Tensor) -> torch.Tensor:
    """(reference, teacher), x (B, T+1) -> mean NLL_ref − mean NLL_teacher per sequence (B,).
    Both models read the same batch, so one pass over the shard scores both."""
    ref, teacher = model_pair
    return token_stats(ref, x)[0].mean(1) - token_stats(teacher, x)[0].mean(1)


miniplm_score.spec = {"score": "miniplm"}


def salt_ds_aggregate(nll: torch.Tensor, in_top: torch.Tensor, zeros: str = "drop") -> torch.Tensor:
    """SALT eq. 10 from token losses (B, T) and top-k membership (B, T) -> (B,) float32.
    The median of an even count is the mean of the two middle values (numpy's convention)."""
    if zeros not in ZEROS:
        raise ValueError(f"zeros must be one of {ZEROS}, not '{zeros}'")
    if zeros == "keep":
        return torch.quantile(torch.where(in_top, nll, 0.0), 0.5, dim=1)
    med = torch.nanquantile(torch.where(in_top, nll, math.nan), 0.5, dim=1)
    return torch.where(torch.isnan(med), -math.inf, med)  # no learnable token: ranked last


def salt_ds_score(top_k: int = 10, zeros: str = "drop") -> ScoreFn:
    """The score function of SALT_DS for one (early-checkpoint) teacher model."""
    if zeros not in ZEROS:
        raise ValueError(f"zeros must be one of {ZEROS}, not '{zeros}'")

    def score(model, x: torch.Tensor) -> torch.Tensor:
        return salt_ds_aggregate(*token_stats(model, x, top_k), zeros)

    score.spec = {"score": "salt_ds", "top_k": top_k, "zeros": zeros}
    return score


def _models(model) -> list:
    return list(model) if isinstance(model, (list, tuple)) else [model]


def scoring_flops(model, n_tokens: int) -> float:
    """Forward FLOPs of scoring n_tokens with every model: Σ_m 2·N_m per token (MiniPLM: 2·N_ref +
    2·N_teacher; SALT_DS: 2·N_teacher), embeddings counted as everywhere in this repo."""
    return float(n_tokens) * sum(models.forward_flops_per_token(m) for m in _models(model))


def score_sequences(model, shard: Shard, score_fn: ScoreFn, batch_size: int, which: np.ndarray | None = None,
                    log=print) -> tuple[np.ndarray, float]:
    """Score the sequences at dataset positions `which` (default: all, in corpus order) with
    `score_fn(model, x)` (`model`: one LM or a tuple, passed through) -> (float32 scores, seconds).
    Nothing is written while it runs: a scoring part is sized to finish inside one job (the plan
    checks it), so a killed part is simply rerun, with no per-batch I/O slowing the GPU."""
    seqs = shard.sequences
    which = np.arange(len(shard)) if which is None else np.asarray(which, dtype=np.int64)
    mods = _models(model)
    for m in mods:
        m.eval()
    dev = next(mods[0].parameters()).device
    out = np.empty(len(which), dtype=np.float32)
    t0 = t_log = time.perf_counter()
    for a in range(0, len(which), batch_size):
        x = torch.from_numpy(seqs[which[a:a + batch_size]].astype(np.int64)).to(dev)
        with torch.inference_mode():
            out[a:a + len(x)] = score_fn(model, x).float().cpu().numpy()
        now = time.perf_counter()
        if now - t_log > 30 or a + len(x) == len(which):
            t_log = now
            log(f"[select] {a + len(x)}/{len(which)} sequences, {(a + len(x)) * shard.seq_len / (now - t0):,.0f} "
                f"tokens/s")
    return out, time.perf_counter() - t0


def score_part(model, shard: Shard, score_fn: ScoreFn, batch_size: int, which: np.ndarray | None, part: int,
               parts: int, out_dir, meta: dict | None = None, log=print) -> Path:
    """One scoring job: part `part` of `parts` batch-aligned ranges of the pool `which` (default:
    the whole shard). Writes `parts/part-PPP.npz` (scores, positions) and then its JSON (range,
    seconds, FLOPs, sha256 and the key every part of one gather must share: shard, pool, score
    spec, models in `meta`), each atomically at the end. Returns the JSON's path."""
    which = np.arange(len(shard)) if which is None else np.asarray(which, dtype=np.int64)
    n = len(which)
    if not 0 <= part < parts:
        raise ValueError(f"scoring part {part} does not exist: compute.scoring_parts is {parts} (parts 0 to {parts - 1})")
    start, stop = part_ranges(n, batch_size, parts)[part]
    key = {"n_sequences": n, "seq_len": shard.seq_len, "shard_sha256": shard.manifest.get("sha256"),
           "pool_sha256": hashlib.sha256(which.tobytes()).hexdigest(),
           "score": getattr(score_fn, "spec", {"fn": getattr(score_fn, "__qualname__", repr(score_fn))}),
           "params": [models.n_params(m) for m in _models(model)], "batch_size": batch_size, **(meta or {})}
    log(f"[select] part {part} of {parts}: sequences {start}:{stop} of {n}")
    scores, seconds = score_sequences(model, shard, score_fn, batch_size, which[start:stop], log=log)
    npz, info = part_paths(out_dir, part)
    npz.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, scores=scores, positions=which[start:stop])
        sha = sha256_file(tmp)
    tokens = (stop - start) * shard.seq_len
    write_json(info, {"part": part, "parts": parts, "start": start, "stop": stop, "tokens_scored": tokens,
                      "flops": scoring_flops(model, tokens), "seconds": seconds, "sha256": sha,
                      "key": json.loads(json.dumps(key))})  # its JSON copy: tuples become lists
    return info


def select_top(scores: np.ndarray, keep: int | float) -> np.ndarray:
    """Indices of the highest scores, sorted (corpus order). `keep`: an int is a count (capped at
    len(scores)), a float in (0, 1] a fraction, floored as MiniPLM's int(ratio·n), at least 1.
    Equal scores go to the lower index, so the selection is a pure function of the scores."""
    scores = np.asarray(scores)
    n = len(scores)
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} scores are NaN: the scoring model diverged?")
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, (int, float, np.integer, np.floating)):
        raise TypeError(f"keep must be a count (int) or a fraction (float), not {keep!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 0:
            raise ValueError(f"keep must be >= 0, not {keep}")
        m = min(int(keep), n)
    else:
        if not 0 < keep <= 1:
            raise ValueError(f"a fraction to keep must be in (0, 1], not {keep}")
        m = min(n, max(1, int(keep * n)))
    order = np.lexsort((np.arange(n), -scores.astype(np.float64)))  # score descending, then index
    return np.sort(order[:m])
