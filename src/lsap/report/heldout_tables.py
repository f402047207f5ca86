"""The tables read against reference lines on the run's held-out text: bits per byte and
next-token accuracy beside the unigram, bigram and surrogate lines; the surrogate's proposals; the
minimal-pairs probe (the primary metric, lsap.data.probe) beside the same lines; and each objective's
predicted cost in bits per byte (lsap.methods.objective_cost) beside what each arm measured."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lsap import methods
from lsap.data.probe import CHANCE
from lsap.report.results import contrasts, final, primary_on, score_verdict


def _p(c) -> str:
    if np.isnan(c.p):
        return "n/a"
    return f"{c.p:.3f} (primary)" if c.primary else f"{c.p:.3f} (Holm {c.p_adj:.3f})"


def heldout(df: pd.DataFrame, lines: dict, domains: list[str], surrogate: dict | None = None) -> pd.DataFrame:
    """The reference lines (unigram, bigram of the training text; the surrogate on its own
    tokenizer) above every method at the matched budget, on the same held-out text: bits per byte
    per domain and their mean, the mean after the fitted temperature, top-1 and top-5 next-token
    accuracy (%), the temperature (mean over seeds)."""
    out = []
    if surrogate:
        d = surrogate["heldout"]
        out.append({"Model": f"surrogate {surrogate['surrogate']} (own tokenizer)",
                    **{f"bpb {dom}": d[dom]["bpb"] for dom in domains},
                    "bpb mean": np.mean([d[dom]["bpb"] for dom in domains]),
                    "bpb at fitted T": np.nan if d[domains[0]]["bpb_calibrated"] is None
                    else np.mean([d[dom]["bpb_calibrated"] for dom in domains]),
                    "top-1 %": 100 * np.mean([d[dom]["top1"] for dom in domains]),
                    "top-5 %": 100 * np.mean([d[dom]["top5"] for dom in domains]),
                    "T": surrogate["temperature"]["temperature"] or np.nan, "seeds": np.nan})
    for name in ("unigram", "bigram"):
        d = lines[name]
        row = {"Model": f"{name} (training text)", **{f"bpb {dom}": d[dom]["bpb"] for dom in domains}}
        row.update({"bpb mean": np.mean([d[dom]["bpb"] for dom in domains]), "bpb at fitted T": np.nan,
                    "top-1 %": 100 * np.mean([d[dom]["top1"] for dom in domains]),
                    "top-5 %": 100 * np.mean([d[dom]["top5"] for dom in domains]), "T": np.nan, "seeds": np.nan})
        out.append(row)
    fin = final(df)
    for name in [methods.BASELINE] + [m for m in fin.method.unique() if m != methods.BASELINE]:
        g = fin[fin.method == name]
        if g.empty:
            continue
        row = {"Model": name, **{f"bpb {dom}": g[f"bpb_{dom}"].mean() for dom in domains}}
        row.update({"bpb mean": g.bpb_mean.mean(), "bpb at fitted T": g.cal_bpb_mean.mean(),
                    "top-1 %": 100 * g.top1_mean.mean(), "top-5 %": 100 * g.top5_mean.mean(),
                    "T": g.temperature.mean(), "seeds": len(g)})
        out.append(row)
    return pd.DataFrame(out)


def proposals(surrogate: dict, domains: list[str]) -> pd.DataFrame:
    """Per LSAP α: how often the surrogate gives the true next token p > α, and how many other
    tokens of Σ∩ it puts above α per position (LSAP's extra targets), per domain and on average."""
    out = []
    for a in surrogate["alphas"]:
        q = surrogate["proposals"][str(a)]
        row = {"α": a}
        for dom in domains:
            row[f"true above α % {dom}"] = 100 * q[dom]["true_above"]
        row["true above α % (mean)"] = 100 * np.mean([q[dom]["true_above"] for dom in domains])
        row["extra targets / position (mean)"] = np.mean([q[dom]["candidates"] for dom in domains])
        out.append(row)
    return pd.DataFrame(out)


def probe(df: pd.DataFrame, lines: dict, surrogate: dict | None, primary: str | None) -> pd.DataFrame:
    """Each probe's accuracy (%) at the matched budget: the unigram and bigram of the training text and
    the surrogate (its own tokenizer) on the same items, then every method, mean over seeds, with its
    difference to CE from the pooled method + seed model (item-paired: every student scores the
    same items), p, MDE at its Holm step and verdict."""
    fin, out = final(df), []
    tasks = [t for t in CHANCE if t in fin and fin[t].notna().any()]
    for name, src in (("unigram (training text)", (lines.get("probes") or {}).get("unigram")),
                      ("bigram (training text)", (lines.get("probes") or {}).get("bigram")),
                      (f"surrogate {surrogate['surrogate']} (own tokenizer)" if surrogate else None,
                       (surrogate or {}).get("probes"))):
        if name and src:
            out.append({"Model": name, **{f"{t} %": 100 * src[t]["acc"] if t in src and src[t]["acc"] is not None
                                          else np.nan for t in tasks}, "items": max(src[t]["n"] for t in tasks if t in src)})
    cs = {t: contrasts(fin, t, primary_on(df, t, primary)) for t in tasks}
    for name in [methods.BASELINE] + [m for m in fin.method.unique() if m != methods.BASELINE]:
        g = fin[fin.method == name]
        row = {"Model": name, **{f"{t} %": g[t].mean() for t in tasks}}
        for t in tasks:
            c = cs[t].get(name)
            row.update({f"Δ {t} vs CE [95% CI]": "–" if c is None else c.fmt(2), f"p {t}": "–" if c is None else _p(c),
                        f"MDE {t}": np.nan if c is None else c.mde,
                        f"verdict {t}": "–" if c is None else score_verdict(fin, name, c, t)})
        row.update({"seeds": len(g)})
        out.append(row)
    return pd.DataFrame(out)


def _reading(m: dict) -> str:
    """What a method's objective is, in the words of lsap.methods.objective_cost."""
    if m.get("data", "all") != "all":
        return f"data selection ({m['data']}): no closed form"
    if m["objective"] == "lsap":
        lam = "λ cosine 1→0" if m.get("lambda_schedule") == "cosine" else f"λ={m.get('lambda_scale', 1.0):g}"
        return (f"α={m['alpha']:g} {lam} {m.get('normaliser')} {m.get('aux_positions')}"
                + (f" {m['proposals']} targets" if m.get("proposals", "surrogate") != "surrogate" else ""))
    if m["objective"] == "kd":
        return f"KD ratio {m['kd_ratio']:g}"
    return methods.OBJECTIVES[m["objective"]].label(methods.parse(m))


def objective_cost(df: pd.DataFrame, surrogate: dict | None, cfg: dict) -> pd.DataFrame:
    """Per arm: the bits per byte its objective's optimum costs by design (predicted, the mean over
    domains of lsap.methods.objective_cost with the surrogate standing in for the data) beside its measured
    bits-per-byte difference to CE at the matched budget."""
    if not surrogate or "predicted_cost_bpb" not in surrogate:
        return pd.DataFrame()
    fin = final(df)
    bpb = contrasts(fin, "bpb_mean", primary_on(df, "bpb_mean", cfg["students"]["primary_contrast"]))
    out = []
    for name in [methods.BASELINE] + [m for m in fin.method.unique() if m != methods.BASELINE]:
        per = surrogate["predicted_cost_bpb"].get(name) or {}
        vals = [v for v in per.values() if v is not None]
        pred = float(np.mean(vals)) if vals and len(vals) == len(per) else np.nan
        c = bpb.get(name)
        out.append({"Method": name, "objective": _reading(cfg["methods"][name]), "predicted Δ bpb": pred,
                    "measured Δ bpb vs CE [95% CI]": "–" if c is None else c.fmt(3),
                    "measured − predicted": np.nan if c is None or np.isnan(pred) else c.mean - pred})
    return pd.DataFrame(out)
