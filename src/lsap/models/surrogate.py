"""LSAP's target proposal: a frozen surrogate LM reads the student's input through the shared
vocabulary Σ∩ and proposes, per position, up to `top_k` extra next-token targets.

    s = F_b→s(x)            tokens outside Σ∩ -> the surrogate's pad id, attention mask 0
    z = S(s)                surrogate logits; position ids stay 0..T-1 (the paper is silent)
    z[F_b→s(x_t+1)] = -inf  the true next token is the CE target, never an auxiliary one
    z[v ∉ Σ∩]       = -inf  a proposal must exist in the student's vocabulary
    candidates = top_k(z), mapped back with F_s→b, with their log-probabilities

The α threshold is applied later (`select`), so one set of candidates serves every α: the
cache written by `write_cache` holds exactly what the online path computes.
Probabilities come from one log-sum-exp per position, never a full float32 softmax:
`probabilities: surrogate` thresholds the surrogate's own distribution (masked tokens keep their
mass: the default), `renormalised` the distribution renormalised after masking (NOTES §1.1 #1).
The top-k itself is `lsap.models.topk.masked_topk`: exact, on the logits' own dtype, the masks applied
per block, no full-vocabulary float32 or masked copy and no host sync (compiled on GPU).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from lsap import models
from lsap.data import vocab
from lsap.io.files import atomic_dir, sha256_file
from lsap.models import topk

PROBABILITIES = ("surrogate", "renormalised")
CACHE_FILES = ("sequences.npy", "ids.npy", "logp.npy")


class Surrogate:
    def __init__(self, model, b_to_s: np.ndarray, s_to_b: np.ndarray, pad_id: int, top_k: int = 15,
                 probabilities: str = "surrogate", compile_: bool = False):
        if probabilities not in PROBABILITIES:
            raise ValueError(f"probabilities must be one of {PROBABILITIES}, not '{probabilities}'")
        self.model, self.top_k, self.probabilities = model, top_k, probabilities
        dev = next(model.parameters()).device
        n_logits = model.get_output_embeddings().weight.shape[0]  # padded beyond the tokenizer
        if len(s_to_b) > n_logits:
            raise ValueError(f"translation table has {len(s_to_b)} surrogate ids, the model only {n_logits}")
        self.b_to_s = torch.as_tensor(b_to_s, dtype=torch.long, device=dev)
        s_to_b_full = np.full(n_logits, vocab.NOT_IN_BASE, dtype=np.int64)
        s_to_b_full[: len(s_to_b)] = s_to_b
        self.s_to_b = torch.as_tensor(s_to_b_full, device=dev)
        self.in_sigma = self.s_to_b >= 0  # the columns a candidate may come from
        # additive mask over the surrogate's logits: 0 on Σ∩, -inf elsewhere (surrogate_lines)
        self.outside = torch.where(self.in_sigma, 0.0, -math.inf).to(dev)
        self.pad_id = pad_id
        self.flops_per_token = models.forward_flops_per_token(model)
        # compiled on GPU as the student is (training.compile): its forward is LSAP's whole overhead,
        # and the top-k's masking and float32 log-sum-exp fuse into its reductions
        gpu = compile_ and dev.type == "cuda"
        self.forward = torch.compile(model) if gpu else model
        self.topk_chunk = topk.compiled_chunk() if gpu else topk.chunk_topk

    @classmethod
    def load(cls, checkpoint: dict, translation: str | Path, top_k: int, probabilities: str, dev=None,
             compile_: bool = False):
        """From a model source spec ({kind: pretrained|hub, ...}) and the run's translation .npz."""
        from lsap.data.vocab import load_translation

        model = models.load_pretrained(checkpoint, dev)
        b_to_s, s_to_b = load_translation(translation)
        with np.load(translation) as z:
            pad = int(z["surrogate_boundary"])  # any real id works: its attention mask is 0
        return cls(model, b_to_s, s_to_b, pad, top_k, probabilities, compile_)

    @torch.inference_mode()
    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The surrogate's logits (B, T, V_s) for student inputs (B, T), bf16 on GPU."""
        s_in = self.b_to_s[inputs]
        attend = s_in != vocab.NOT_IN_SURROGATE
        s_in = torch.where(attend, s_in, self.pad_id)
        # a query whose keys are all masked (a document starting outside Σ∩) still gets finite
        # logits from transformers' SDPA path; its candidates are simply uninformed
        dtype = models.inference_dtype(inputs.device)
        with torch.autocast(inputs.device.type, dtype=dtype, enabled=inputs.device.type == "cuda"):
            return self.forward(input_ids=s_in, attention_mask=attend.long()).logits

    @torch.inference_mode()
    def candidates(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs, targets (B, T) student ids -> (ids (B, T, K) student ids, logp (B, T, K) float32);
        slots without a candidate have logp -inf."""
        return self.from_logits(self.logits(inputs), targets)

    @torch.inference_mode()
    def from_logits(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The candidate step after the forward: the surrogate's logits (B, T, V_s), in their own
        dtype, and the student's targets (B, T) -> `candidates`' (ids, logp)."""
        b, t, v = logits.shape
        s_tgt = self.b_to_s[targets].reshape(-1)  # NOT_IN_SURROGATE (< 0): nothing to leave out
        logp, cols = topk.masked_topk(logits.reshape(b * t, v), self.top_k, keep=self.in_sigma, exclude=s_tgt,
                                      renormalise=self.probabilities == "renormalised", chunk_fn=self.topk_chunk)
        ids = self.s_to_b[cols].clamp_min(0)
        return ids.view(b, t, -1), logp.float().view(b, t, -1)


def select(logp: torch.Tensor, alpha: float) -> torch.Tensor:
    """The auxiliary targets: candidates with probability > α (at most ⌈1/α⌉−1 per position)."""
    return logp > math.log(alpha)


# ---- the cache: candidates for every training sequence, computed once, filtered per α ----
def write_cache(sur: Surrogate, sequences: np.ndarray, out_dir, batch_size: int, meta: dict,
                which: np.ndarray | None = None, log=print) -> Path:
    """ids (int32) and logp (float32), each (n, T, K), for the sequences `which` (sorted dataset
    positions; default all) of the training shard: the runs read only those."""
    which = np.arange(len(sequences)) if which is None else np.asarray(which)
    n, t = len(which), sequences.shape[1] - 1
    dev = next(sur.model.parameters()).device
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / "sequences.npy", which)
        ids = np.lib.format.open_memmap(tmp / "ids.npy", "w+", np.int32, (n, t, sur.top_k))
        logp = np.lib.format.open_memmap(tmp / "logp.npy", "w+", np.float32, (n, t, sur.top_k))
        for a in range(0, n, batch_size):
            x = torch.from_numpy(sequences[which[a:a + batch_size]].astype(np.int64)).to(dev)
            i, lp = sur.candidates(x[:, :-1], x[:, 1:])
            ids[a:a + len(x)], logp[a:a + len(x)] = i.cpu().numpy(), lp.cpu().numpy()
            if a // batch_size % 50 == 0:
                log(f"[targets] {a + len(x)}/{n} sequences")
        ids.flush(), logp.flush()
        del ids, logp
        sha = {f: sha256_file(tmp / f) for f in CACHE_FILES}  # checked on every read
        (tmp / "meta.json").write_text(json.dumps({**meta, "sequences": n, "shard_sequences": len(sequences),
                                                   "seq_len": t, "top_k": sur.top_k, "sha256": sha,
                                                   "probabilities": sur.probabilities}, indent=2))
    return Path(out_dir)


class CachedCandidates:
    """The cache read back: candidates of the sequences at the given dataset positions."""

    def __init__(self, cache_dir, top_k: int, probabilities: str, n_sequences: int):
        cache_dir = Path(cache_dir)
        meta = json.loads((cache_dir / "meta.json").read_text())
        if (meta["top_k"], meta["probabilities"], meta["shard_sequences"]) != (top_k, probabilities, n_sequences):
            raise ValueError(f"target cache {cache_dir} was built with top_k={meta['top_k']}, probabilities="
                             f"{meta['probabilities']} for a shard of {meta['shard_sequences']} sequences; this run "
                             f"wants {top_k}, {probabilities}, {n_sequences}: delete it and rerun the targets rule")
        self.dir = cache_dir
        for f in CACHE_FILES:
            if sha256_file(cache_dir / f) != meta.get("sha256", {}).get(f):
                raise ValueError(f"{cache_dir / f} does not match the hash its cache recorded (damaged or "
                                 f"edited): delete {cache_dir} and rerun the same command (the targets rule "
                                 f"rebuilds it)")
        self.which = np.load(cache_dir / "sequences.npy")
        self.ids = np.load(cache_dir / "ids.npy", mmap_mode="r")
        self.logp = np.load(cache_dir / "logp.npy", mmap_mode="r")
        self.meta = meta

    def __call__(self, seq_ids: np.ndarray, dev) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.searchsorted(self.which, seq_ids)
        if (rows >= len(self.which)).any() or (self.which[np.minimum(rows, len(self.which) - 1)] != seq_ids).any():
            raise ValueError(f"sequences {sorted(set(seq_ids.tolist()) - set(self.which.tolist()))[:5]} are not in the "
                             f"target cache {self.dir}: it was planned for another budget, batch or seeds; rerun "
                             f"the targets rule")
        order = np.argsort(rows)  # sorted reads from the memmap, then back to batch order
        back = np.argsort(order)
        ids = torch.from_numpy(self.ids[rows[order]][back].astype(np.int64)).to(dev)
        logp = torch.from_numpy(self.logp[rows[order]][back]).to(dev)
        return ids, logp
