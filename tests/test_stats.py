"""Paired differences against CE, their t-intervals and verdicts (lsap.stats, lsap.results)."""

import numpy as np
import pandas as pd
import pytest

from lsap import results, stats


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
                         "flops": 1e12, "tokens": 1e5, "wall_s": 1.0, "avg": 25.0 + seed, "avg_se": 1.0,
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
    assert row["verdict (bpb)"] == "better" and row["verdict (score)"] == "n/a (no spread)" and row.seeds == 3
    bands = results.seed_bands(df, "bpb_mean")
    assert (bands.lo < bands["mean"]).all() and (bands.seeds == 3).all()
