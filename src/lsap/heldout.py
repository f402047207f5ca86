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

import math

import numpy as np
import torch

from lsap import corpus, vocab

TEMPERATURES = np.geomspace(0.25, 4.0, 61)  # steps of 4.7 %: the NLL error of the grid is second order
TOP_K = (1, 5)
ROW_ELEMENTS = 1 << 26  # float32 logits scored at once (256 MiB)


def select_slices(corpus_dir, split: str, max_bytes: int | None) -> tuple[dict, dict]:
    """(scored, fit): per domain, the first max_bytes UTF-8 bytes of its documents in corpus order
    (None: all), the last document cut at a character boundary; and the whole documents after
    those, up to as many bytes again (the temperature's fit slice: empty when max_bytes is None)."""
    scored: dict[str, list[str]] = {}
    fit: dict[str, list[str]] = {}
    size: dict[str, int] = {}
    rest: dict[str, int] = {}
    for domain, text in corpus.iter_documents(corpus_dir, split):
        n_bytes = len(text.encode("utf-8"))
        left = None if max_bytes is None else max_bytes - size.get(domain, 0)
        if left is None or left > 0:
            if left is not None and n_bytes > left:  # the last scored document: cut, and the domain is full
                text, n_bytes = text.encode("utf-8")[:left].decode("utf-8", "ignore"), left
            scored.setdefault(domain, []).append(text)
            size[domain] = size.get(domain, 0) + n_bytes
        elif rest.get(domain, 0) < max_bytes:  # whole documents only: none shares text with the scored slice
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


@torch.no_grad()
def text_scores(model, tokenizer, texts: list[str], seq_len: int, batch_size: int,
                temperatures=(1.0,)) -> dict:
    """NLL (nats, one per temperature), top-k hits and the number of tokens scored. The texts are
    packed as [B] t1 [B] t2 ... (B the boundary token) and cut into windows of seq_len + 1 tokens
    that overlap by one, so each token after the first is a target exactly once."""
    stream, scored = pack(tokenizer, texts)
    n_win = max(1, math.ceil((len(stream) - 1) / seq_len))
    pad = n_win * seq_len + 1 - len(stream)
    x = torch.from_numpy(np.concatenate([stream, np.full(pad, vocab.boundary_id(tokenizer))]))
    keep = torch.from_numpy(np.concatenate([scored, np.zeros(pad, dtype=bool)]))
    idx = torch.arange(n_win)[:, None] * seq_len + torch.arange(seq_len + 1)  # (n_win, seq_len + 1)
    dev = next(model.parameters()).device
    nll = np.zeros(len(temperatures))
    hits = dict.fromkeys(TOP_K, 0)
    for i in range(0, n_win, batch_size):
        w = x[idx[i:i + batch_size]].to(dev)
        mask = keep[idx[i:i + batch_size]][:, 1:].to(dev)
        out = model(input_ids=w[:, :-1]).logits
        flat, rows = out.view(-1, out.shape[-1]), mask.reshape(-1).nonzero().squeeze(1)
        targets = w[:, 1:].reshape(-1)
        step = max(1, ROW_ELEMENTS // out.shape[-1])  # float32 rows at a time: a 150k vocabulary stays small
        for a in range(0, len(rows), step):
            r = rows[a:a + step]
            logits, target = flat[r].float(), targets[r]
            true = logits.gather(1, target[:, None])[:, 0]
            for j, temp in enumerate(temperatures):  # sums in float64
                nll[j] += (torch.logsumexp(logits / temp, -1) - true / temp).double().sum().item()
            top = logits.topk(max(TOP_K), -1).indices  # temperature-free: a ranking
            for k in TOP_K:
                hits[k] += (top[:, :k] == target[:, None]).any(-1).sum().item()
    return {"nll": nll, "hits": hits, "tokens": int(scored.sum())}


def fit_temperature(model, tokenizer, fit: dict[str, list[str]], seq_len: int, batch_size: int) -> dict:
    """The temperature that minimises the NLL of the fit slice, pooled over its domains (grid search
    over TEMPERATURES); None when there is no fit slice."""
    texts = [t for docs in fit.values() for t in docs]
    if not texts:
        return {"temperature": None, "fit_tokens": 0,
                "note": "no validation text after the scored slice (evaluation.bpb_max_bytes is null): "
                        "no temperature fitted"}
    s = text_scores(model, tokenizer, texts, seq_len, batch_size, TEMPERATURES)
    best = int(np.argmin(s["nll"]))
    return {"temperature": float(TEMPERATURES[best]), "fit_tokens": s["tokens"],
            "at_grid_edge": best in (0, len(TEMPERATURES) - 1)}


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
