"""Held-out text scores of a causal LM, per corpus domain: bits per byte, top-1 and top-5
next-token accuracy, and bits per byte after one temperature per model fitted on a disjoint slice.

Bits per byte is tokenizer-free: total NLL (nats) of a domain's validation text / (ln 2 · its
UTF-8 bytes). Documents are packed as in the training shards (boundary token before each) and
scored in non-overlapping windows of seq_len targets: every text token is predicted exactly once,
with context from the start of its window only; boundary tokens are not scored.

Why the extra figures: bits per byte charges calibration, which LSAP's extra targets change on
purpose (they move probability onto the proposal set), while benchmarks rank answers. Accuracy is
a ranking measure on the same tokens, and the temperature-fitted bits per byte separates "ranks
worse" from "is less calibrated". The temperature is fitted on the validation text that follows
the scored slice (disjoint documents), pooled over domains, on a geometric grid.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from lsap.data import corpus, vocab

TEMPERATURES = np.geomspace(0.25, 4.0, 13)  # the coarse grid (steps of 26 %); a fine one follows around its best
TOP_K = (1, 5)
FIT_TOKENS = 2048  # positions the temperature is fitted on, evenly spread (their logits are kept: 1.2 GB at 150k)
FIT_SHARE = 4  # the fit slice: up to 1/FIT_SHARE of the scored bytes per domain (its forward is the fit's cost)
ROW_ELEMENTS = 1 << 26  # float32 logits scored at once (256 MiB)
# logits of one forward at most (1 GiB in float32): the windows per forward shrink below
# evaluation.batch_size where seq_len x vocabulary is large (64 windows of SmolLM2's 1,024 x 49,152
# are 12.9 GB of float32 logits, and their copies tripled that: a 24 GB machine was OOM-killed)
FORWARD_ELEMENTS = 1 << 28


SLICES = "heldout/slices.json"  # in the corpus folder: written once by the heldout job, read by every scorer


def select_slices(corpus_dir, split: str, max_bytes: int | None) -> tuple[dict, dict]:
    """(scored, fit) of `split`: read from the heldout job's file when it holds this split at this
    max_bytes (one pass over the corpus per run, not one per checkpoint), else scanned."""
    saved = Path(corpus_dir) / SLICES
    if saved.is_file():
        s = json.loads(saved.read_text(encoding="utf-8"))
        if s["split"] == split and s["max_bytes"] == max_bytes:
            return s["scored"], s["fit"]
    return scan_slices(corpus_dir, split, max_bytes)


def write_heldout(cfg: dict, corpus_dir, log=print) -> dict:
    """The heldout job: one pass over the validation documents -> the scoring slices
    (corpus/heldout/slices.json) and the probes' items (corpus/heldout/<probe>.jsonl, lsap.data.probe)."""
    from lsap.data import probe
    from lsap.io.files import write_json

    ecfg, out = cfg["evaluation"], Path(corpus_dir) / "heldout"
    docs: dict[str, list[str]] = {}
    for domain, text in corpus.iter_documents(corpus_dir, "validation"):
        docs.setdefault(domain, []).append(text)
    scored, fit = scan_slices(corpus_dir, "validation", ecfg["bpb_max_bytes"], docs)
    counts = {}
    for name, n in probe.wanted(ecfg).items():
        items = probe.BUILDERS[name](docs, n, cfg["seed"])
        if len(items) < n:
            log(f"[heldout] {name}: {len(items)} items of the {n} asked (the validation text holds no more)")
        probe.write(items, out / f"{name}.jsonl")
        counts[name] = len(items)
    write_json(out / "slices.json", {"split": "validation", "max_bytes": ecfg["bpb_max_bytes"],
                                     "scored": scored, "fit": fit, "probe_items": counts})
    log(f"[heldout] {sum(map(len, docs.values()))} validation documents read once; probes: {counts}")
    return counts


def scan_slices(corpus_dir, split: str, max_bytes: int | None, docs: dict | None = None) -> tuple[dict, dict]:
    """(scored, fit): per domain, the first max_bytes UTF-8 bytes of its documents in corpus order
    (None: all), the last document cut at a character boundary; and the documents after those, up
    to max_bytes / FIT_SHARE bytes, cut the same way (the temperature's fit slice: empty when
    max_bytes is None)."""
    scored: dict[str, list[str]] = {}
    fit: dict[str, list[str]] = {}
    size: dict[str, int] = {}
    rest: dict[str, int] = {}
    pairs = ((d, t) for d, texts in docs.items() for t in texts) if docs is not None else \
        corpus.iter_documents(corpus_dir, split)
    for domain, text in pairs:
        n_bytes = len(text.encode("utf-8"))
        left = None if max_bytes is None else max_bytes - size.get(domain, 0)
        if left is None or left > 0:
            if left is not None and n_bytes > left:  # the last scored document: cut, and the domain is full
                text, n_bytes = text.encode("utf-8")[:left].decode("utf-8", "ignore"), left
            scored.setdefault(domain, []).append(text)
            size[domain] = size.get(domain, 0) + n_bytes
        elif rest.get(domain, 0) < max_bytes // FIT_SHARE:  # later documents: none shares text with the scored slice
            room = max_bytes // FIT_SHARE - rest.get(domain, 0)
            if n_bytes > room:  # cut as the scored slice's last document is
                text, n_bytes = text.encode("utf-8")[:room].decode("utf-8", "ignore"), room
            fit.setdefault(domain, []).append(text)
            rest[domain] = rest.get(domain, 0) + n_bytes
    return scored, fit


def pack(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(token stream [B] t1 [B] t2 ..., which positions are scored: every text token, no boundary)."""
    bnd = vocab.boundary_id(tokenizer)
    ids = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    stream = np.fromiter((t for doc in ids for t in (bnd, *doc)), dtype=np.int64)
    scored = np.fromiter((s for doc in ids for s in (False, *[True] * len(doc))), dtype=bool)
    return stream, scored


def window(seq_len: int, n_tokens: int) -> int:
    """The scoring window: seq_len, or the whole stream when it is shorter. A causal model's
    logits at a position do not depend on what follows it, so the scores are the same; a short
    slice is not padded to a long context (SmolLM2's 8,192 on a CPU: minutes per domain)."""
    return max(1, min(seq_len, n_tokens - 1))


def window_batches(stream: np.ndarray, scored: np.ndarray, seq_len: int, batch_size: int, vocab_size: int,
                   pad_id: int, dev):
    """Yield (windows (b, seq_len + 1), which of their targets are scored (b, seq_len)) on `dev`: the
    stream cut into windows of seq_len + 1 tokens that overlap by one (each token after the first is
    a target exactly once), at most batch_size per forward and FORWARD_ELEMENTS logits; windows
    without a scored target are not run. The padding after the stream is never a scored target,
    and a causal model's earlier logits do not see it."""
    seq_len = window(seq_len, len(stream))
    n_win = max(1, math.ceil((len(stream) - 1) / seq_len))
    pad = n_win * seq_len + 1 - len(stream)
    x = torch.from_numpy(np.concatenate([stream, np.full(pad, pad_id, dtype=stream.dtype)]))
    keep = torch.from_numpy(np.concatenate([scored, np.zeros(pad, dtype=bool)]))
    idx = torch.arange(n_win)[:, None] * seq_len + torch.arange(seq_len + 1)  # (n_win, seq_len + 1)
    per_forward = max(1, min(batch_size, FORWARD_ELEMENTS // (seq_len * vocab_size)))
    for i in range(0, n_win, per_forward):
        sel = idx[i:i + per_forward]
        sel = sel[keep[sel][:, 1:].any(1)]
        if len(sel):
            yield x[sel].to(dev), keep[sel][:, 1:].to(dev)


@torch.no_grad()
def scored_logits(model, tokenizer, texts: list[str], seq_len: int, batch_size: int, max_tokens: int | None = None):
    """Yield (float32 logits (rows, V), true next tokens (rows,)) of every scored token, a few rows
    at a time. The texts are packed as [B] t1 [B] t2 ... (B the boundary token) and scored in the
    windows of `window_batches`. `max_tokens`: only that many, evenly spaced (windows without one
    are not run)."""
    stream, scored = pack(tokenizer, texts)
    if max_tokens is not None and scored.sum() > max_tokens:
        at = np.flatnonzero(scored)
        scored = np.zeros_like(scored)
        scored[at[np.linspace(0, len(at) - 1, max_tokens).round().astype(int)]] = True
    dev = next(model.parameters()).device
    for w, mask in window_batches(stream, scored, seq_len, batch_size, model.config.vocab_size,
                                  vocab.boundary_id(tokenizer), dev):
        out = model(input_ids=w[:, :-1]).logits
        flat, rows = out.view(-1, out.shape[-1]), mask.reshape(-1).nonzero().squeeze(1)
        targets = w[:, 1:].reshape(-1)
        step = max(1, ROW_ELEMENTS // out.shape[-1])  # float32 rows at a time: a 150k vocabulary stays small
        for a in range(0, len(rows), step):
            r = rows[a:a + step]
            yield flat[r].float(), targets[r]


def _nll(logits: torch.Tensor, target: torch.Tensor, temp: float) -> float:
    true = logits.gather(1, target[:, None])[:, 0]
    return (torch.logsumexp(logits / temp, -1) - true / temp).double().sum().item()  # sums in float64


def text_scores(model, tokenizer, texts: list[str], seq_len: int, batch_size: int, temperatures=(1.0,)) -> dict:
    """NLL (nats, one per temperature), top-k hits and the number of tokens scored."""
    nll = np.zeros(len(temperatures))
    hits, n = dict.fromkeys(TOP_K, 0), 0
    for logits, target in scored_logits(model, tokenizer, texts, seq_len, batch_size):
        for j, temp in enumerate(temperatures):
            nll[j] += _nll(logits, target, temp)
        top = logits.topk(max(TOP_K), -1).indices  # temperature-free: a ranking
        for k in TOP_K:
            hits[k] += (top[:, :k] == target[:, None]).any(-1).sum().item()
        n += len(target)
    return {"nll": nll, "hits": hits, "tokens": n}


def fit_temperature(model, tokenizer, fit: dict[str, list[str]], seq_len: int, batch_size: int) -> dict:
    """The temperature that minimises the NLL of FIT_TOKENS positions of the fit slice, pooled over
    its domains: their logits kept, a coarse geometric grid over [0.25, 4], then a fine one between
    the best point's neighbours (steps of ~1 %); None when there is no fit slice."""
    texts = [t for docs in fit.values() for t in docs]
    if not texts:
        return {"temperature": None, "fit_tokens": 0,
                "note": "no validation text after the scored slice (evaluation.bpb_max_bytes is null): "
                        "no temperature fitted"}
    rows = list(scored_logits(model, tokenizer, texts, seq_len, batch_size, max_tokens=FIT_TOKENS))
    nll = lambda temp: sum(_nll(z, y, temp) for z, y in rows)  # noqa: E731
    grid = TEMPERATURES
    best = int(np.argmin([nll(t) for t in grid]))
    fine = np.geomspace(grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)], 25)
    temp = float(fine[int(np.argmin([nll(t) for t in fine]))])
    return {"temperature": temp, "fit_tokens": sum(len(y) for _, y in rows),
            "at_grid_edge": best in (0, len(grid) - 1)}


def domain_scores(model, tokenizer, corpus_dir, max_bytes: int | None = None, seq_len: int | None = None,
                  batch_size: int = 16, split: str = "validation") -> tuple[dict, dict]:
    """({domain: bpb, calibrated bpb, top-1/top-5 accuracy, counts}, the temperature fit) of a
    model on each corpus domain's `split` (seq_len: the model's context by default)."""
    seq_len = seq_len or model.config.max_position_embeddings
    scored, fit = select_slices(corpus_dir, split, max_bytes)
    calib = fit_temperature(model, tokenizer, fit, seq_len, batch_size)
    temps = (1.0,) if calib["temperature"] is None else (1.0, calib["temperature"])
    out = {}
    for domain, texts in scored.items():
        s = text_scores(model, tokenizer, texts, seq_len, batch_size, temps)
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        bits = s["nll"] / (math.log(2) * n_bytes)
        out[domain] = {"bpb": float(bits[0]), "bpb_calibrated": float(bits[-1]) if len(temps) > 1 else None,
                       **{f"top{k}": s["hits"][k] / max(1, s["tokens"]) for k in TOP_K},
                       "nll_nats": float(s["nll"][0]), "bytes": n_bytes, "tokens": s["tokens"],
                       "documents": len(texts), "seq_len": seq_len}
    return out, calib


def domain_bpb(model, tokenizer, corpus_dir, max_bytes: int | None = None, seq_len: int | None = None,
               batch_size: int = 16, split: str = "validation") -> dict:
    """domain_scores without the temperature fit's record."""
    return domain_scores(model, tokenizer, corpus_dir, max_bytes, seq_len, batch_size, split)[0]
