"""Paired differences against CE, their t-intervals and verdicts (lsap.report.stats, lsap.report.results)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from lsap.report import compute_equivalent, results, stats


def test_t_interval_matches_the_textbook_value():
    iv = stats.t_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051
    assert iv.mean == 2.0 and iv.n == 3
    assert iv.hi - 2.0 == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6)
    assert iv.lo == pytest.approx(4.0 - iv.hi)


def test_one_seed_gives_no_interval_and_no_verdict():
    iv = stats.t_interval([0.3])
    assert np.isnan(iv.lo) and iv.fmt() == "+0.30 [n/a]"
    assert stats.verdict(iv, lower_is_better=True) == "n/a (1 seed)"
    assert "Smoke test, not evidence" in stats.smoke_note(1) and stats.smoke_note(3) == ""


def test_verdicts_follow_the_interval_and_the_direction():
    lower = stats.t_interval([-0.10, -0.12, -0.11])  # clearly below zero
    assert stats.verdict(lower, lower_is_better=True) == "better"
    assert stats.verdict(lower, lower_is_better=False) == "worse"
    assert stats.verdict(stats.t_interval([-0.1, 0.1, 0.02]), lower_is_better=True) == "inconclusive"


def test_differences_are_paired_by_seed():
    # seed effects shared by both methods cancel: a constant gap of -0.05 is 'better' at any spread of seeds
    ce = {0: 3.0, 1: 2.5, 2: 3.4}
    m = {s: v - 0.05 + 0.001 * s for s, v in ce.items()}
    iv = stats.paired(m, ce)
    assert iv.hi < 0 and stats.verdict(iv, lower_is_better=True) == "better"
    # unpaired, the same numbers would be inconclusive
    assert stats.verdict(stats.t_interval(np.array(list(m.values())) - np.mean(list(ce.values()))), True) == \
        "inconclusive"
    assert stats.paired({0: 1.0, 5: 2.0}, ce).n == 1  # only shared seeds pair


def _frame(methods_bpb: dict) -> pd.DataFrame:
    rows = []
    for method, per_seed in methods_bpb.items():
        for seed, bpb in enumerate(per_seed):
            rows.append({"method": method, "label": method.replace("lsap", "lsap α=0.05"), "objective":
                         "lsap" if method.startswith("lsap") else "ce", "seed": seed, "fraction": 1.0,
                         "flops": 1e12, "tokens": 1e5, "wall_s": 1.0, "avg": 25.0 + seed, "avg_se": 1.0, "chance": 28.6,
                         "bpb_mean": bpb, "bpb_web": bpb, **{f"ledger_{k}": 0.0 for k in results.LEDGER}})
    return pd.DataFrame(rows)


def test_tables_carry_intervals_and_verdicts():
    df = _frame({"ce": [3.0, 2.8, 3.1], "lsap": [2.9, 2.71, 2.98]})
    h2h = results.head_to_head(df, ["web"])
    assert list(h2h.Method) == ["ce", "lsap"]
    assert h2h["verdict (bpb)"].tolist() == ["–", "better"]
    assert h2h["Δ bpb vs CE [95% CI]"].iloc[1].startswith("-0.103 [")
    pvr = results.paper_vs_replication(df)
    row = pvr[pvr.Method == "lsap"].iloc[0]
    assert row["verdict (bpb)"] == "better" and row["verdict (score)"] == "n/a (at chance)" and row.seeds == 3
    far = df.assign(avg=df.avg + 30)  # far above chance: the scores' zero spread is what stops a verdict
    assert results.paper_vs_replication(far).set_index("Method").loc["lsap", "verdict (score)"] == "n/a (no spread)"
    bands = results.seed_bands(df, "bpb_mean")
    assert (bands.lo < bands["mean"]).all() and (bands.seeds == 3).all()


def test_pooled_contrasts_reduce_to_the_paired_t_test_for_two_methods():
    ce = {0: 3.00, 1: 3.10, 2: 2.95, 3: 3.05}
    m = {0: 2.97, 1: 3.05, 2: 2.94, 3: 3.00}
    c = stats.pooled_contrasts({"ce": ce, "m": m}, "ce")["m"]
    d = [m[s] - ce[s] for s in ce]
    t = sps.ttest_rel([m[s] for s in ce], [ce[s] for s in ce])
    assert c.mean == pytest.approx(np.mean(d)) and c.p == pytest.approx(t.pvalue) and c.df == 3
    iv = stats.t_interval(d)
    assert (c.lo, c.hi) == (pytest.approx(iv.lo), pytest.approx(iv.hi))


def test_pooled_contrasts_against_an_ols_fit_and_holm_by_hand():
    """Three methods × four seeds: the residual variance of the additive model from least squares,
    Holm over the two non-primary contrasts, and a primary contrast left unadjusted."""
    rng = np.random.default_rng(0)
    seeds = [0, 1, 2, 3]
    y = {m: {s: 3 + off + 0.02 * s + rng.normal(0, 0.01) for s in seeds}
         for m, off in (("ce", 0), ("a", -0.02), ("b", 0.005), ("c", -0.03))}
    got = stats.pooled_contrasts(y, "ce", primary="a")
    names = ["ce", "a", "b", "c"]
    X, obs = [], []
    for i, m in enumerate(names):
        for j, s in enumerate(seeds):
            X.append([1] + [int(i == k) for k in (1, 2, 3)] + [int(j == k) for k in (1, 2, 3)])
            obs.append(y[m][s])
    X, obs = np.array(X, float), np.array(obs)
    beta, res, *_ = np.linalg.lstsq(X, obs, rcond=None)
    df = len(obs) - X.shape[1]
    se = np.sqrt(res[0] / df * 2 / 4)
    p = {m: 2 * sps.t.sf(abs(beta[1 + k]) / se, df) for k, m in enumerate(["a", "b", "c"])}
    assert all(got[m].mean == pytest.approx(beta[1 + k]) for k, m in enumerate(["a", "b", "c"]))
    assert all(got[m].p == pytest.approx(p[m]) for m in p) and got["a"].df == df == 9
    lo, hi = sorted(["b", "c"], key=p.get)
    assert got[lo].p_adj == pytest.approx(min(1, 2 * p[lo]))
    assert got[hi].p_adj == pytest.approx(max(min(1, 2 * p[lo]), p[hi]))
    assert got["a"].p_adj == got["a"].p and got["a"].primary
    assert got["c"].verdict(lower_is_better=True) == "better" and got["b"].verdict(lower_is_better=True) != "better"
    mde = (sps.t.ppf(0.975, df) + sps.t.ppf(0.8, df)) * se
    assert got["a"].mde == pytest.approx(mde)


def test_one_seed_gives_no_contrast_verdict():
    c = stats.pooled_contrasts({"ce": {0: 3.0}, "m": {0: 2.9}}, "ce")["m"]
    assert c.verdict(True) == "n/a (1 seed)" and np.isnan(c.lo)


def test_compute_multiplier_reads_ces_curve_in_log_flops():
    """CE at 1, 2, 4 TFLOPs scores 3.0, 2.8, 2.6 bpb; a method at 2 TFLOPs scoring 2.7 matches CE at
    √8 ≈ 2.83 TFLOPs (halfway in log-FLOPs): 1.41×, on every seed; at 2.5 it is beyond CE's curve."""
    rows = []
    for seed in (0, 1, 2):
        for f, (flops, bpb) in enumerate(((1e12, 3.0), (2e12, 2.8), (4e12, 2.6))):
            rows.append({"method": "ce", "seed": seed, "fraction": (f + 1) / 3, "flops": flops, "bpb_mean": bpb})
        rows.append({"method": "m", "seed": seed, "fraction": 1.0, "flops": 2e12, "bpb_mean": 2.7 + 0.001 * seed})
        rows.append({"method": "far", "seed": seed, "fraction": 1.0, "flops": 2e12, "bpb_mean": 2.5})
    df = pd.DataFrame(rows)
    r = compute_equivalent.compute_multiplier(df, "m")
    assert r["seeds"] == 3 and 1.38 < r["lo"] <= r["ratio"] <= r["hi"] < 1.43
    assert r["ratio"] == pytest.approx(np.sqrt(8) / 2, rel=0.01)
    far = compute_equivalent.compute_multiplier(df, "far")
    assert np.isnan(far["ratio"]) and far["beyond_curve"] == 3
