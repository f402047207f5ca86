"""The surrogate's own figures on the held-out slices the students are scored on: its bits per
byte, accuracy and fitted temperature (its own tokenizer, `lsap.data.heldout`), and how good its
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

from lsap import models
from lsap.data import heldout, vocab


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


COST_POSITIONS = 8192  # per domain: the predicted costs' positions (a mean over them, evenly spread) ...
COST_ELEMENTS = 1 << 27  # ... at most this many float64 probabilities held at once (1 GiB; 883 positions at 152k)


def cost_positions(vocab: int) -> int:
    """Positions per domain the predicted costs are averaged over, for a surrogate of `vocab` logits."""
    return min(COST_POSITIONS, max(1, COST_ELEMENTS // vocab))


@torch.no_grad()
def predicted_costs(sur, stream: np.ndarray, scored: np.ndarray, arms: dict, unigram: np.ndarray, seq_len: int,
                    batch_size: int, alpha_default: float) -> dict:
    """{arm: mean KL(P ‖ q*) in nats per scored position} of each arm's objective (lsap.methods.objective_cost),
    P the surrogate's distribution at up to COST_POSITIONS evenly spread student positions of one slice."""
    from lsap.methods import objective_cost

    at = np.flatnonzero(scored)
    keep = np.zeros_like(scored)
    n_pos = min(len(at), cost_positions(len(sur.s_to_b)))
    keep[at[np.linspace(0, len(at) - 1, n_pos).round().astype(int)]] = True
    sigma = (sur.s_to_b >= 0).cpu().numpy()
    v_s = sur.s_to_b.shape[0]
    s_ids = np.flatnonzero(sigma)
    u = np.zeros(v_s)
    u[s_ids] = unigram[sur.s_to_b.cpu().numpy()[s_ids]]
    u_full = unigram / unigram.sum()
    u = u / unigram.sum()
    u_out = float(1 - u.sum())
    rows = []
    seq_len = heldout.window(seq_len, len(stream))
    n_win = max(1, math.ceil((len(stream) - 1) / seq_len))
    pad = n_win * seq_len + 1 - len(stream)
    x = torch.from_numpy(np.concatenate([stream, np.full(pad, stream[0])]))
    mask_all = torch.from_numpy(np.concatenate([keep, np.zeros(pad, dtype=bool)]))
    idx = torch.arange(n_win)[:, None] * seq_len + torch.arange(seq_len + 1)
    dev = sur.b_to_s.device
    for i in range(0, n_win, batch_size):
        sel = idx[i:i + batch_size]
        sel = sel[mask_all[sel][:, 1:].any(1)]
        if len(sel):
            w, mask = x[sel].to(dev), mask_all[sel][:, 1:].to(dev)
            rows.append(torch.softmax(sur.logits(w[:, :-1])[mask].double(), -1).cpu().numpy())
    if not rows:
        return {}
    P = np.concatenate(rows)
    mean_count = {}  # the split normaliser's E|v_t|, per α and reading of the positions
    out = {}
    for name, m in arms.items():
        if m.get("objective") == "lsap" and m.get("normaliser") == "split":
            a, pos = m.get("alpha", alpha_default), m.get("aux_positions", "shared_target")
            if (a, pos) not in mean_count:
                mean_count[a, pos] = float(objective_cost.expected_count(
                    P, (P > a) & sigma, sigma if pos == "shared_target" else None).mean())
        kl = objective_cost.method_cost(P, m, alpha_default, sigma, u, u_out, len(u_full),
                                        mean_count.get((m.get("alpha"), m.get("aux_positions"))))
        out[name] = None if kl is None else float(kl.mean())
    return out


def surrogate_lines(cfg: dict, translation, student_tokenizer_dir, corpus_dir, out, student_shards=None) -> dict:
    """The surrogate-lines job -> one JSON: its held-out scores and its proposals' quality per α."""
    from lsap.config import lsap_alphas
    from lsap.io.files import write_json
    from lsap.models.surrogate import Surrogate

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
    # each arm's objective cost, predicted (lsap.methods.objective_cost), in bits per byte per domain
    arms = {n: cfg["methods"][n] for n in cfg["students"]["methods"]}
    costs: dict = {n: {} for n in arms}
    if student_shards is not None:
        from lsap.data import shards

        unigram = shards.unigram_counts(shards.open_shard(student_shards, "train", verify=False)).astype(np.float64)
        for domain, texts in scored.items():
            stream, mask = heldout.pack(student_tok, texts)
            per_token = predicted_costs(sur, stream, mask, arms, unigram, seq_len, ecfg["batch_size"],
                                        alphas[0] if alphas else 0.05)
            n_bytes = sum(len(t.encode("utf-8")) for t in texts)
            for n, kl in per_token.items():
                costs[n][domain] = None if kl is None else kl * int(mask.sum()) / (math.log(2) * n_bytes)
    probes = probe_lines(sur.model, vocab.build(spec), corpus_dir, ecfg)
    raw = cfg["students"]["teachers"]["surrogate"]
    label = f"{raw['name']} (trained here)" if raw["kind"] == "trained" else raw.get("name") or raw.get("id")
    result = {"surrogate": label, "params": models.n_params(sur.model),
              "heldout": own, "temperature": calib, "alphas": alphas, "proposals": quality, "probes": probes,
              "predicted_cost_bpb": costs, "cost_positions_per_domain": cost_positions(len(sur.s_to_b))}
    write_json(out, result)
    return result


def probe_lines(model, tokenizer, corpus_dir, ecfg: dict) -> dict:
    """{probe task: {acc, n, margins}} of a model on the run's probe items, on its own tokenizer,
    through lm-eval exactly as the students are scored."""
    from lsap.data import probe
    from lsap.evaluation import evaluate

    if not probe.wanted(ecfg):
        return {}
    from pathlib import Path

    task_dict, _ = evaluate.load_tasks(ecfg, Path(corpus_dir) / "heldout", benchmarks_too=False)
    raw = evaluate.run_lm_eval(model, tokenizer, task_dict, ecfg, log_samples=True)
    margins = evaluate.probe_margins(raw)
    return {t: {"acc": raw["results"][t].get("acc,none"),  # lm-eval's own: a tie goes to the first choice
                "lm_eval": {k.split(",")[0]: v for k, v in raw["results"][t].items() if "," in k},
                "n": len(margins[t]), "margins": margins[t]} for t in margins}
