"""The surrogate's own figures on the held-out slices the students are scored on: its bits per
byte, accuracy and fitted temperature (its own tokenizer, `lsap.heldout`), and how good its
proposals are at each LSAP α of the run, on the student's tokens through Σ∩ as training reads them:

    true_above_α   share of positions whose true next token the surrogate gives p > α
                   (it would have been a candidate, were it not the CE target)
    candidates_α   mean number of other Σ∩ tokens above α per position: LSAP's |v_t|

A surrogate that rarely puts the true token above α proposes targets that are mostly not what
comes next; LSAP's extra targets are then closer to noise than to knowledge.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lsap import heldout, models, vocab


@torch.no_grad()
def proposal_quality(sur, stream: np.ndarray, scored: np.ndarray, alphas: list[float], seq_len: int,
                     batch_size: int) -> dict:
    """{α: {true_above, candidates, positions}} over one packed slice (heldout.pack), in windows of
    seq_len targets (each scored token once, context from its window's start)."""
    seq_len = heldout.window(seq_len, len(stream))
    n_win = max(1, math.ceil((len(stream) - 1) / seq_len))
    pad = n_win * seq_len + 1 - len(stream)
    x = torch.from_numpy(np.concatenate([stream, np.full(pad, stream[0])]))
    keep = torch.from_numpy(np.concatenate([scored, np.zeros(pad, dtype=bool)]))
    idx = torch.arange(n_win)[:, None] * seq_len + torch.arange(seq_len + 1)
    dev = sur.b_to_s.device
    log_a = torch.tensor([math.log(a) for a in alphas], device=dev)
    above = torch.zeros(len(alphas), dtype=torch.float64)
    cands = torch.zeros(len(alphas), dtype=torch.float64)
    n = 0
    for i in range(0, n_win, batch_size):
        w = x[idx[i:i + batch_size]].to(dev)
        mask = keep[idx[i:i + batch_size]][:, 1:].to(dev)
        logits = sur.logits(w[:, :-1])[mask].float()
        logp = torch.log_softmax(logits, -1)  # the surrogate's own distribution (probabilities: surrogate)
        s_tgt = sur.b_to_s[w[:, 1:][mask]]
        shared = s_tgt >= 0
        p_true = torch.where(shared, logp.gather(1, s_tgt.clamp_min(0)[:, None])[:, 0], -math.inf)
        in_sigma = logp + sur.outside[: logp.shape[1]]  # -inf outside Σ∩
        for j in range(len(alphas)):
            over = (in_sigma > log_a[j]).sum(1) - (p_true > log_a[j]).long()  # the true token is not a candidate
            above[j] += (p_true > log_a[j]).sum().item()
            cands[j] += over.sum().item()
        n += int(mask.sum())
    return {a: {"true_above": above[j].item() / max(n, 1), "candidates": cands[j].item() / max(n, 1), "positions": n}
            for j, a in enumerate(alphas)}


def surrogate_lines(cfg: dict, translation, student_tokenizer_dir, corpus_dir, out) -> dict:
    """The surrogate-lines job -> one JSON: its held-out scores and its proposals' quality per α."""
    from lsap.config import lsap_alphas
    from lsap.files import write_json
    from lsap.surrogate import Surrogate

    ecfg = cfg["evaluation"]
    spec = models.resolve(cfg, cfg["students"]["teachers"]["surrogate"])
    dev = models.device()
    alphas = lsap_alphas(cfg)
    sur = Surrogate.load(spec, translation, top_k=1, probabilities="surrogate", dev=dev)
    own, calib = heldout.domain_scores(sur.model, vocab.build(spec), corpus_dir, ecfg["bpb_max_bytes"],
                                       ecfg["bpb_seq_len"], ecfg["batch_size"])
    student_tok = vocab.load(student_tokenizer_dir)
    scored, _ = heldout.select_slices(corpus_dir, "validation", ecfg["bpb_max_bytes"])
    seq_len = cfg["shards"]["seq_len"]  # the windows training reads
    quality = {}
    for domain, texts in scored.items():
        stream, mask = heldout.pack(student_tok, texts)
        for a, q in proposal_quality(sur, stream, mask, alphas, seq_len, ecfg["batch_size"]).items():
            quality.setdefault(str(a), {})[domain] = q
    raw = cfg["students"]["teachers"]["surrogate"]
    label = f"{raw['name']} (trained here)" if raw["kind"] == "trained" else raw.get("name") or raw.get("id")
    result = {"surrogate": label, "params": models.n_params(sur.model),
              "heldout": own, "temperature": calib, "alphas": alphas, "proposals": quality}
    write_json(out, result)
    return result
