"""The analysis stage: the tokenizer-overlap table and LSAP's Table 1 (how many vocabulary
entries a surrogate gives probability > α, per position), with real tokenizers and real LMs."""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lsap import models
from lsap.data import corpus, vocab
from lsap.io import snapshot
from lsap.io.files import read_json, write_json

# LSAP Table 1 (NOTES.md §3): model -> alpha -> column -> count; AVG as printed (Llama 0.05's
# printed 3.14 disagrees with its cells, whose mean is 2.75: NOTES ambiguity 8).
COLUMNS = ["WT", "OWT", "FW-E", "ArXiv", "C4", "IMDb", "PG19"]
PAPER_TABLE1 = {
    "Qwen3-0.6B": {0.01: [9.26, 9.77, 9.37, 9.54, 9.91, 10.37, 8.94, 9.59],
                   0.05: [2.77, 2.85, 2.84, 2.60, 2.86, 2.81, 2.39, 2.73],
                   0.2: [0.87, 0.86, 0.91, 0.83, 0.84, 0.78, 0.81, 0.84]},
    "Llama-3.1-8B": {0.01: [8.61, 8.82, 8.69, 9.16, 8.81, 9.89, 6.83, 8.69],
                     0.05: [2.77, 2.85, 2.84, 2.74, 2.79, 2.94, 2.29, 3.14],
                     0.2: [0.99, 1.00, 1.02, 0.94, 0.98, 0.92, 0.99, 0.98]},
    "Mistral-7B-v0.3": {0.01: [8.33, 7.94, 8.02, 9.01, 8.51, 9.32, 6.32, 8.21],
                        0.05: [2.75, 2.68, 2.72, 2.71, 2.78, 2.84, 2.14, 2.66],
                        0.2: [0.98, 1.03, 1.04, 0.95, 1.00, 0.95, 1.03, 1.00]},
}


def count_above(logits: torch.Tensor, alphas, chunk: int = 1024) -> torch.Tensor:
    """(len(alphas), *logits.shape[:-1]) counts of entries with softmax probability > α.

    p_v > α  <=>  z_v − logsumexp(z) > log α, so no softmax is formed. One pass marks the
    entries above the smallest α (at most ⌈1/α⌉−1 per row); every α is then counted on those
    few entries alone. Rows go in chunks, so at most `chunk` rows are upcast to float32 at once.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    log_a = [math.log(a) for a in alphas]
    out = torch.zeros(len(alphas), flat.shape[0], dtype=torch.long, device=flat.device)
    for i in range(0, flat.shape[0], chunk):
        z = flat[i:i + chunk].float()
        lse = torch.logsumexp(z, dim=-1, keepdim=True)
        rows, cols = torch.nonzero(z > lse + min(log_a), as_tuple=True)
        logp = z[rows, cols] - lse[rows, 0]
        for j, la in enumerate(log_a):
            out[j, i:i + chunk].index_add_(0, rows, (logp > la).long())
    return out.reshape(len(alphas), *logits.shape[:-1])


def max_count(alpha: float) -> int:
    """At most ⌈1/α⌉−1 entries can each hold more than α of a unit mass."""
    return math.ceil(1 / alpha) - 1


def _domain_stream(tok, corpus_dir, split: str, domain: str) -> np.ndarray:
    ids, eos = [], vocab.boundary_id(tok)
    for _, text in corpus.iter_documents(corpus_dir, split, [domain]):
        ids.extend(tok(text, add_special_tokens=False)["input_ids"])
        ids.append(eos)
    return np.asarray(ids, dtype=np.int64)


def _windows(stream: np.ndarray, n: int, length: int, seed: int) -> np.ndarray:
    length = min(length, len(stream))
    starts = np.random.default_rng(seed).integers(0, len(stream) - length + 1, size=n)
    return np.stack([stream[s:s + length] for s in starts])


def model_label(spec: dict) -> str:
    if spec["kind"] == "trained":
        return f"{spec['name']} (trained here)"
    return spec.get("name") or Path(spec.get("id", "model")).name


def snapshot_missing(spec: dict) -> str | None:
    """Why this job's hub snapshot lists `spec` as missing (an optional model it could not read,
    e.g. gated without an accepted licence), or None: no snapshot, or the model is in it."""
    path = os.environ.get(snapshot.MANIFEST_ENV)
    if not path or spec["kind"] != "hub":
        return None
    return next((e["missing"] for e in read_json(path)["entries"]
                 if e.get("kind") == "model" and e["id"] == spec["id"] and "missing" in e), None)


def table1(cfg: dict, corpus_dir, log=print) -> dict:
    """Mean count per position, per model × domain × α × seed, plus count histograms and timing.
    An optional model the hub snapshot lacks, or that cannot be loaded, is left out and named
    under `missing` (label -> id, reason), which the table's notes print."""
    models.require_gpu(cfg, "table1")  # a GPU job whose torch sees no GPU would run on the CPU for hours
    t1 = cfg["analysis"]["table1"]
    alphas, dev = t1["alphas"], models.device()
    result = {"alphas": alphas, "seeds": t1["seeds"], "examples": t1["examples"], "seq_len": t1["seq_len"],
              "models": {}, "missing": {}}
    for spec in t1["models"]:
        label = model_label(spec)
        spec = models.resolve(cfg, spec)  # a model this run trained: its final HF checkpoint
        reason = snapshot_missing(spec) if spec.get("optional") else None
        if reason is None:
            try:
                model = models.load_pretrained(spec, dev)
                tok = vocab.build(spec) if spec["kind"] == "hub" else vocab.load_pretrained(spec["name"])
            # transformers' OSError for a gated, absent or unreachable repository; under the
            # snapshot (jobs offline), SnapshotError for an id it does not hold
            except (OSError, snapshot.SnapshotError) as e:
                if not spec.get("optional"):
                    raise
                reason = " ".join(str(e).split())[:300]
        if reason is not None:
            result["missing"][label] = {"id": spec.get("id"), "reason": reason}
            log(f"[table1] {label}: left out (optional: true): {reason}")
            continue
        means = defaultdict(lambda: defaultdict(dict))
        hist = defaultdict(lambda: defaultdict(lambda: np.zeros(max_count(min(alphas)) + 1, np.int64)))
        t_fwd = t_count = 0.0
        n_tok = 0
        for domain in cfg["corpus"]["domains"]:
            stream = _domain_stream(tok, corpus_dir, t1["split"], domain)
            if len(stream) < 2:  # e.g. a training domain's tiny validation share: no window to score
                log(f"[table1] {label} {domain}: no {t1['split']} text, left out")
                continue
            for seed in t1["seeds"]:
                batch_counts = []
                windows = torch.from_numpy(_windows(stream, t1["examples"], t1["seq_len"], seed))
                for b in range(0, len(windows), t1["batch_size"]):
                    x = windows[b:b + t1["batch_size"]].to(dev)
                    t0 = time.perf_counter()
                    with torch.inference_mode():
                        logits = model(input_ids=x).logits
                        _sync(dev)
                        t1_ = time.perf_counter()
                        batch_counts.append(count_above(logits, alphas).reshape(len(alphas), -1).cpu())
                    t_fwd, t_count = t_fwd + t1_ - t0, t_count + time.perf_counter() - t1_
                    n_tok += x.numel()
                counts = torch.cat(batch_counts, dim=1).numpy()
                for a, c in zip(alphas, counts, strict=True):
                    means[domain][a][str(seed)] = float(c.mean())
                    hist[domain][a] += np.bincount(c, minlength=len(hist[domain][a]))[: len(hist[domain][a])]
            log(f"[table1] {label} {domain}: " + "  ".join(
                f"α={a}: {np.mean(list(means[domain][a].values())):.2f}" for a in alphas))
        result["models"][label] = {
            "spec": spec, "params": models.n_params(model), "vocab": len(tok),
            "means": {d: {str(a): v for a, v in m.items()} for d, m in means.items()},
            "histograms": {d: {str(a): h.tolist() for a, h in m.items()} for d, m in hist.items()},
            "tokens": n_tok, "forward_tok_s": n_tok / t_fwd, "analysis_tok_s": n_tok / (t_fwd + t_count),
        }
        log(f"[table1] {label}: bare forward {n_tok / t_fwd:,.0f} tok/s, forward + counting "
            f"{n_tok / (t_fwd + t_count):,.0f} tok/s ({100 * t_count / t_fwd:.1f}% extra)")
        del model
    return result


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def table1_frame(result: dict, cfg: dict) -> pd.DataFrame:
    """Rows: ours (mean ± std over seeds) per model × α, then the paper's rows for the columns
    our domains stand in for."""
    # the domains every model was scored on (a domain without text in the split is left out)
    domains = [d for d in cfg["corpus"]["domains"] if all(d in m["means"] for m in result["models"].values())]
    cols = {d: f"{d} ({cfg['corpus']['domains'][d].get('table1') or '–'})" for d in domains}
    rows = []
    for label, m in result["models"].items():
        for a in result["alphas"]:
            per_seed = np.array([[m["means"][d][str(a)][str(s)] for s in result["seeds"]] for d in domains])
            row = {"model": label, "α": a}
            row.update({cols[d]: f"{per_seed[i].mean():.2f} ± {per_seed[i].std():.2f}" for i, d in enumerate(domains)})
            row["AVG"] = f"{per_seed.mean(0).mean():.2f} ± {per_seed.mean(0).std():.2f}"
            rows.append(row)
    for label in result.get("missing", {}):  # an optional model that could not be loaded
        rows.append({"model": f"{label} (not loaded)", "α": "–", **{c: "n/a" for c in cols.values()}, "AVG": "n/a"})
    for label, by_alpha in PAPER_TABLE1.items():
        for a, vals in by_alpha.items():
            row = {"model": f"paper: {label}", "α": a}
            for d in domains:
                col = cfg["corpus"]["domains"][d].get("table1")
                row[cols[d]] = f"{vals[COLUMNS.index(col)]:.2f}" if col in COLUMNS else "n/a"
            row["AVG"] = f"{vals[-1]:.2f}"
            rows.append(row)
    return pd.DataFrame(rows)


def overlap_frame(cfg: dict, corpus_dir, pairs: list[tuple[str, object, str, object]]) -> pd.DataFrame:
    """|Σ_b|, |Σ_s|, |Σ∩| and the share of the base's corpus tokens (per domain) inside Σ∩."""
    split = cfg["analysis"]["overlap"]["split"]
    streams: dict[str, dict[str, np.ndarray]] = {}
    rows = []
    for b_name, base, s_name, sur in pairs:
        if b_name not in streams:
            streams[b_name] = {d: _domain_stream(base, corpus_dir, split, d) for d in cfg["corpus"]["domains"]}
        b_to_s, _ = vocab.translation_tables(base, sur)
        inside = b_to_s != vocab.NOT_IN_SURROGATE
        n_int = vocab.intersection_size(b_to_s)
        row = {"base": b_name, "surrogate": s_name, "|Σ_b|": len(base), "|Σ_s|": len(sur), "|Σ∩|": n_int,
               "|Σ∩|/|Σ_b|": n_int / len(base), "|Σ∩|/|Σ_s|": n_int / len(sur)}
        all_ids = []
        for d, ids in streams[b_name].items():
            row[f"tokens in Σ∩: {d}"] = float(inside[ids].mean()) if len(ids) else float("nan")
            all_ids.append(ids)
        row["tokens in Σ∩: all"] = float(inside[np.concatenate(all_ids)].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def overlap_job(cfg: dict, corpus_dir, student_dir, surrogate_dir) -> pd.DataFrame:
    """The overlap stage: the configured real tokenizer pairs, plus this run's own pair."""
    ov = cfg["analysis"]["overlap"]
    toks = {n: vocab.load_pretrained(n) for n in dict.fromkeys(ov["bases"] + ov["surrogates"])}
    pairs = [(b, toks[b], s, toks[s]) for b in ov["bases"] for s in ov["surrogates"] if b != s]
    pairs.append((f"{cfg['run']} student", vocab.load(student_dir), f"{cfg['run']} surrogate", vocab.load(surrogate_dir)))
    return overlap_frame(cfg, corpus_dir, pairs)


def save_table1(result: dict, path) -> None:
    write_json(path, result)
