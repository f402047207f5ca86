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
import os
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np
import torch

from lsap import models
from lsap.data import heldout, vocab


@torch.no_grad()
def proposal_quality(sur, stream: np.ndarray, scored: np.ndarray, alphas: list[float], seq_len: int,
                     batch_size: int) -> dict:
    """{α: {true_above, candidates, positions}} over one packed slice (heldout.pack), in windows of
    seq_len targets (each scored token once, context from its window's start)."""
    dev = sur.b_to_s.device
    log_a = torch.tensor([math.log(a) for a in alphas], device=dev)
    above = torch.zeros(len(alphas), dtype=torch.float64)
    cands = torch.zeros(len(alphas), dtype=torch.float64)
    n = 0
    for w, mask in heldout.window_batches(stream, scored, seq_len, batch_size, len(sur.s_to_b), int(stream[0]), dev):
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


# arrays the size of one domain's P a cost thread holds at once: P and the temporaries of one arm
# (5.1 P at the peak of the random control's, measured with tracemalloc at 49,152 entries)
COST_COPIES = 7


def cost_workers(n_domains: int, vocab: int) -> int:
    """Domains whose predicted costs are computed at once: one per core this process may use, as
    many as the free memory holds (≈ 7.5 GB each at 2,730 positions × 49,152), at least one."""
    need = cost_positions(vocab) * vocab * 8 * COST_COPIES
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no such figure here: one at a time
        free = 0
    return max(1, min(n_domains, len(os.sched_getaffinity(0)), free // need))


def cost_positions(vocab: int) -> int:
    """Positions per domain the predicted costs are averaged over, for a surrogate of `vocab` logits."""
    return min(COST_POSITIONS, max(1, COST_ELEMENTS // vocab))


@torch.no_grad()
def cost_rows(sur, stream: np.ndarray, scored: np.ndarray, seq_len: int, batch_size: int) -> np.ndarray:
    """P (rows, V): the surrogate's float64 distribution at up to cost_positions evenly spread scored
    student positions of one slice, as training reads the stream (windows of seq_len)."""
    at = np.flatnonzero(scored)
    keep = np.zeros_like(scored)
    n_pos = min(len(at), cost_positions(len(sur.s_to_b)))
    keep[at[np.linspace(0, len(at) - 1, n_pos).round().astype(int)]] = True
    rows = [torch.softmax(sur.logits(w[:, :-1])[mask].double(), -1).cpu().numpy()
            for w, mask in heldout.window_batches(stream, keep, seq_len, batch_size, len(sur.s_to_b),
                                                  int(stream[0]), sur.b_to_s.device)]
    return np.concatenate(rows) if rows else np.zeros((0, len(sur.s_to_b)))


def arm_costs(P: np.ndarray, s_to_b: np.ndarray, arms: dict, unigram: np.ndarray, alpha_default: float) -> dict:
    """{arm: mean KL(P ‖ q*) in nats per row} of each arm's objective (lsap.methods.objective_cost);
    s_to_b: the surrogate's ids in the student's vocabulary (-1 outside Σ∩), unigram: the student's
    training counts. Float64 arithmetic on the host (seconds per domain at a 49k vocabulary)."""
    from lsap.methods import objective_cost

    if not len(P):
        return {}
    sigma = s_to_b >= 0
    s_ids = np.flatnonzero(sigma)
    u = np.zeros(len(s_to_b))
    u[s_ids] = unigram[s_to_b[s_ids]] / unigram.sum()
    u_out = float(1 - u.sum())
    mean_count = {}  # the split normaliser's E|v_t|, per α and reading of the positions
    out = {}
    for name, m in arms.items():
        if m.get("objective") == "lsap" and m.get("normaliser") == "split":
            a, pos = m.get("alpha", alpha_default), m.get("aux_positions", "shared_target")
            if (a, pos) not in mean_count:
                mean_count[a, pos] = float(objective_cost.expected_count(
                    P, (P > a) & sigma, sigma if pos == "shared_target" else None).mean())
        kl = objective_cost.method_cost(P, m, alpha_default, sigma, u, u_out, len(unigram),
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
        s_to_b = sur.s_to_b.cpu().numpy()
        # the arithmetic of one domain runs on the host's cores while the next domain's forward runs;
        # at most `workers` domains' distributions and their temporaries are held at once
        workers = cost_workers(len(scored), len(sur.s_to_b))
        with ThreadPoolExecutor(workers) as pool:
            pending = {}
            for domain, texts in scored.items():
                while sum(not f.done() for f, _, _ in pending.values()) >= workers:
                    wait([f for f, _, _ in pending.values()], return_when=FIRST_COMPLETED)
                stream, mask = heldout.pack(student_tok, texts)
                P = cost_rows(sur, stream, mask, seq_len, ecfg["batch_size"])
                pending[domain] = (pool.submit(arm_costs, P, s_to_b, arms, unigram, alphas[0] if alphas else 0.05),
                                   int(mask.sum()), sum(len(t.encode("utf-8")) for t in texts))
                del P
            for domain, (future, n_tokens, n_bytes) in pending.items():
                for n, kl in future.result().items():
                    costs[n][domain] = None if kl is None else kl * n_tokens / (math.log(2) * n_bytes)
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
