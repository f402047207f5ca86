"""Paired differences against a baseline over seeds, their 95 % intervals, and the verdict.

The tables' contrasts (every method − CE) come from one pooled model of all methods at once,
y[method, seed] = μ + method + seed + ε, whose residual variance all contrasts share (more
degrees of freedom than any one pair has), with one pre-registered primary contrast tested alone
and every other one Holm-adjusted; beside each, the minimum detectable difference.

Why a t-interval over seeds (docs/statistics.md has the longer argument): a seed is the unit of
replication here (it redraws the initialisation and the data order, and CE's seed-s run reads the
same sequences as every other method's seed-s run), while the documents scored and the benchmark
items are the same for every method, so their sampling noise largely cancels in a paired
difference and the seed-to-seed training noise does not. With 3 seeds a bootstrap over seeds has
10 distinct resamples and its percentile interval is too narrow; Student's t with n-1 degrees of
freedom is the standard small-sample interval and widens honestly with few seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float      # NaN with fewer than two seeds: no interval
    hi: float
    n: int

    def fmt(self, digits: int = 2) -> str:
        if np.isnan(self.mean):
            return "n/a"
        if np.isnan(self.lo):
            return f"{self.mean:+.{digits}f} [n/a]"
        return f"{self.mean:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"


def t_interval(values, level: float = LEVEL) -> Interval:
    """Mean of `values` with its two-sided Student-t interval (NaN bounds below two values)."""
    d = np.asarray(values, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    m = float(d.mean())
    if len(d) < 2:
        return Interval(m, np.nan, np.nan, 1)
    half = float(sps.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return Interval(m, m - half, m + half, len(d))


def paired(method: dict, baseline: dict, level: float = LEVEL) -> Interval:
    """The interval of method − baseline over the seeds both have ({seed: value} each)."""
    seeds = sorted(set(method) & set(baseline))
    return t_interval([method[s] - baseline[s] for s in seeds], level)


def verdict(iv: Interval, lower_is_better: bool) -> str:
    """better / worse / inconclusive at the interval's level; n/a without an interval."""
    if np.isnan(iv.lo):
        return "n/a (1 seed)" if iv.n == 1 else "n/a"
    if iv.lo == iv.hi:  # every seed gave the same difference (a coarse metric): no spread to judge by
        return "n/a (no spread)"
    if iv.hi < 0 or iv.lo > 0:
        return "better" if (iv.hi < 0) == lower_is_better else "worse"
    return "inconclusive"


def smoke_note(n_seeds: int) -> str:
    """What a caption says of a run too small to be evidence (one seed: no interval at all)."""
    return "" if n_seeds >= 2 else " Smoke test, not evidence: one seed, so no interval (n/a) and no verdict."


POWER = 0.8  # for the minimum detectable difference


@dataclass(frozen=True)
class Contrast:
    """method − baseline from the pooled method + seed model."""
    mean: float
    lo: float        # the contrast's own 95 % interval (not adjusted for multiplicity)
    hi: float
    p: float         # two-sided, unadjusted
    p_adj: float     # Holm over the non-primary contrasts; = p for the primary one
    mde: float       # the smallest |difference| detected with POWER at this contrast's own level (its Holm step)
    df: int          # residual degrees of freedom
    n: int           # seeds
    primary: bool

    def fmt(self, digits: int = 2) -> str:
        return Interval(self.mean, self.lo, self.hi, self.n).fmt(digits)

    def verdict(self, lower_is_better: bool) -> str:
        if np.isnan(self.mean):
            return "n/a"
        if self.df < 1 or np.isnan(self.p):
            return "n/a (1 seed)" if self.n == 1 else "n/a (no spread)" if self.df >= 1 else "n/a"
        if self.p_adj >= 1 - LEVEL:
            return "inconclusive"
        return "better" if (self.mean < 0) == lower_is_better else "worse"


def holm(p: dict) -> dict:
    """Holm's step-down adjustment of a family of p-values ({name: p})."""
    order = sorted(p, key=lambda k: p[k])
    out, running = {}, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p[k]))
        out[k] = running
    return out


def pooled_contrasts(values: dict, baseline: str, primary: str | None = None, level: float = LEVEL,
                     power: float = POWER) -> dict:
    """{method: Contrast of method − baseline} from y[method][seed] ({method: {seed: value}}), on the
    seeds every method has. Residual variance of the additive method + seed model, df = (M−1)(S−1)."""
    seeds = sorted(set.intersection(*(set(v) for v in values.values()))) if values else []
    names = [m for m in values if m != baseline]
    nan = Contrast(np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, 0, len(seeds), False)
    if baseline not in values or not names or not seeds:
        return {m: nan for m in names}
    y = np.array([[values[m][s] for s in seeds] for m in [baseline, *names]], dtype=np.float64)
    n_m, n_s = y.shape
    resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    df = (n_m - 1) * (n_s - 1)
    sigma = float(np.sqrt((resid ** 2).sum() / df)) if df > 0 else np.nan
    se = sigma * np.sqrt(2 / n_s) if df > 0 else np.nan
    crit = float(sps.t.ppf(0.5 + level / 2, df)) if df > 0 else np.nan
    mde = (crit + float(sps.t.ppf(power, df))) * se if df > 0 else np.nan
    est = {m: float(y[i + 1].mean() - y[0].mean()) for i, m in enumerate(names)}
    p = {m: float(2 * sps.t.sf(abs(est[m]) / se, df)) if df > 0 and se > 0 else np.nan for m in names}
    adj = holm({m: v for m, v in p.items() if m != primary and not np.isnan(v)})
    # the MDE at each contrast's own Holm step: the i-th smallest of m non-primary p-values is tested
    # at (1 − level)/(m − i), so its detectable difference is larger than the primary's
    family = sorted((m for m in names if m != primary and not np.isnan(p[m])), key=lambda k: p[k])
    mde_at = {m: holm_mde(se, df, (1 - level) / (len(family) - i), power) for i, m in enumerate(family)}
    return {m: Contrast(est[m], est[m] - crit * se if df > 0 else np.nan, est[m] + crit * se if df > 0 else np.nan,
                        p[m], p[m] if m == primary else adj.get(m, np.nan), mde_at.get(m, mde), df, n_s,
                        m == primary)
            for m in names}


def holm_mde(se: float, df: int, alpha: float, power: float = POWER) -> float:
    """The smallest |difference| a two-sided t-test at `alpha` detects with `power`."""
    return float((sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * se) if df > 0 else np.nan
