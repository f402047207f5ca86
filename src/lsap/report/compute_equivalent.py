"""Each method's effect as compute: the CE training FLOPs that reach the method's final score,
read off CE's checkpoint curve, as a multiple of the method's own FLOPs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lsap import methods
from lsap.report import stats
from lsap.report.results import final


def compute_multiplier(df: pd.DataFrame, method: str, col: str = "bpb_mean", lower_is_better: bool = True) -> dict:
    """LSAP's (any method's) effect as CE compute: per seed, the TFLOPs at which CE's curve reaches
    the method's final value (linear in log-FLOPs between CE's checkpoints), over the method's own
    TFLOPs; the mean of the log-ratios over seeds with its 95 % t-interval, back on the ratio
    scale. A final value beyond CE's best point has no ratio (it is reported as beyond the curve).
    CE's points before its last are checkpoints of one cosine schedule, not annealed: CE at those
    budgets trained on its own would do better, so the ratio is an upper bound. When any seed is off
    CE's curve there is no ratio: a mean over the other seeds would drop the best (or worst) ones."""
    fin, logs, beyond = final(df), [], 0
    for seed, g in df[df.method == methods.BASELINE].groupby("seed"):
        m = fin[(fin.method == method) & (fin.seed == seed)]
        if m.empty or len(g) < 2:
            continue
        g = g.sort_values("flops")
        x, yv = np.log(g.flops.to_numpy()), g[col].to_numpy() * (1 if lower_is_better else -1)
        target = float(m[col].iloc[0]) * (1 if lower_is_better else -1)
        if target < yv.min():
            beyond += 1
            continue
        hit = next((i for i in range(len(yv) - 1, 0, -1) if (yv[i] - target) * (yv[i - 1] - target) <= 0), None)
        if hit is None:  # worse than CE's first checkpoint: before its curve
            beyond += 1
            continue
        a, b = yv[hit - 1], yv[hit]
        t = 0.0 if a == b else (a - target) / (a - b)
        logs.append(x[hit - 1] + t * (x[hit] - x[hit - 1]) - np.log(float(m.flops.iloc[0])))
    if beyond:  # a mean over the seeds left would drop the ones off CE's curve (the best or the worst): biased
        logs = []
    iv = stats.t_interval(logs)
    return {"ratio": float(np.exp(iv.mean)) if logs else np.nan, "lo": float(np.exp(iv.lo)) if logs else np.nan,
            "hi": float(np.exp(iv.hi)) if logs else np.nan, "seeds": len(logs), "beyond_curve": beyond}


def effective_compute(df: pd.DataFrame) -> pd.DataFrame:
    """Every method's final bits per byte as a multiple of CE's compute (compute_multiplier)."""
    out = []
    for name in [m for m in final(df).method.unique() if m != methods.BASELINE]:
        r = compute_multiplier(df, name)
        ratio = (f"n/a: {r['beyond_curve']} seed(s) off CE's curve" if r["beyond_curve"] else "n/a") \
            if np.isnan(r["ratio"]) else (f"{r['ratio']:.2f}×" + (
            f" [{r['lo']:.2f}, {r['hi']:.2f}]" if not np.isnan(r["lo"]) else " [n/a]"))
        out.append({"Method": name, "CE compute to match its bpb (× its own)": ratio, "seeds": r["seeds"],
                    "seeds beyond CE's curve": r["beyond_curve"]})
    return pd.DataFrame(out)
