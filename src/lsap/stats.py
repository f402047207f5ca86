"""Paired differences against a baseline over seeds, their 95 % intervals, and the verdict.

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
