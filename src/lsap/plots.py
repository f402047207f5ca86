"""The run's figures, drawn from the tables' data frames (results.collect, results.contrast_frame):
curves against training compute with seed bands, the contrasts with CE, LSAP's targets per α."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lsap.results import final, seed_bands


def _axes(ncols=1, width=5.2):
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt.subplots(1, ncols, figsize=(width * ncols, 3.6), squeeze=False)


def _vs_flops(df: pd.DataFrame, y: str, ylabel: str, title: str):
    """One line per method against training TFLOPs, one point per checkpoint: the mean over seeds
    with its 95 % t-interval as a band (none with one seed)."""
    fig, ax = _axes()
    _bands_on(ax[0, 0], df, y, ylabel, title)
    return fig


def _bands_on(a, df: pd.DataFrame, y: str, ylabel: str, title: str) -> None:
    import seaborn as sns

    bands = seed_bands(df, y)
    for (method, g), color in zip(bands.groupby("method", sort=False),
                                  sns.color_palette("tab10", bands.method.nunique()), strict=True):
        g = g.sort_values("tflops")
        a.plot(g.tflops, g["mean"], marker="o", ms=3, color=color, label=method)
        if g.lo.notna().any():  # the band between checkpoints, an error bar at each (one checkpoint: the bar)
            a.fill_between(g.tflops, g.lo, g.hi, color=color, alpha=0.15, lw=0)
            a.errorbar(g.tflops, g["mean"], yerr=[g["mean"] - g.lo, g.hi - g["mean"]], fmt="none", ecolor=color,
                       elinewidth=1, capsize=2)
    n = int(bands.seeds.max()) if len(bands) else 0
    a.set(xlabel="training TFLOPs (teacher inference included)", ylabel=ylabel,
          title=title + (f" ({n} seeds, 95% t-bands)" if n >= 2 else " (smoke test, not evidence: 1 seed)"))
    a.legend(fontsize=6, ncols=2)


def figure_heldout_vs_flops(df: pd.DataFrame):
    """The held-out figures beside bits per byte against compute: after the fitted temperature,
    top-1 and top-5 next-token accuracy (mean of domains)."""
    fig, ax = _axes(ncols=3, width=4.6)
    for a, (col, label) in zip(ax[0], (("cal_bpb_mean", "bits per byte at the fitted temperature"),
                                       ("top1_mean", "top-1 next-token accuracy"),
                                       ("top5_mean", "top-5 next-token accuracy")), strict=True):
        _bands_on(a, df, col, label, label.split(" at ")[0].capitalize())
    fig.tight_layout()
    return fig


def figure_score_vs_flops(df: pd.DataFrame):
    """Figure 2 analogue: average score vs TFLOPs per method, with chance on the same tasks."""
    fig = _vs_flops(df, "avg", "average score (%)", "Average zero-shot score vs compute")
    if "chance" in df and df.chance.notna().any():
        a = fig.axes[0]
        a.axhline(float(df.chance.mean()), color="0.3", lw=1, ls="--", label="chance")
        a.legend(fontsize=6, ncols=2)
    return fig


def figure_bpb_vs_flops(df: pd.DataFrame):
    return _vs_flops(df, "bpb_mean", "bits per byte (mean of domains)", "Held-out bits per byte vs compute")


def figure_targets_vs_alpha(df: pd.DataFrame):
    """Mean auxiliary targets per position over each LSAP run, against α, with the ⌈1/α⌉−1 bound."""
    import seaborn as sns

    fig, ax = _axes()
    d = final(df)[final(df).alpha.notna()]   # the methods whose tables show an α (LSAP)
    sns.scatterplot(d, x="alpha", y="targets_per_pos", hue="label", s=50, ax=ax[0, 0])
    alphas = np.geomspace(d.alpha.min() if len(d) else 0.01, 0.5, 50)
    ax[0, 0].plot(alphas, np.minimum(np.ceil(1 / alphas) - 1, 15), color="0.6", lw=1, ls="--",
                  label="bound min(⌈1/α⌉−1, 15)")
    ax[0, 0].set(xscale="log", yscale="log", xlabel="α", ylabel="auxiliary targets per position",
                 title="Surrogate targets per position (run mean)")
    ax[0, 0].legend(fontsize=6)
    return fig


def figure_contrasts(contrasts: pd.DataFrame):
    """The headline: every method − CE at the matched budget, one row per method, on bits per byte
    (left) and the benchmark mean (right), each with its 95 % interval; the primary contrast in bold."""
    fig, ax = _axes(ncols=2, width=4.4)
    for a, (metric, label) in zip(ax[0], (("bpb_mean", "Δ bits per byte vs CE (lower is better)"),
                                          ("avg", "Δ average score vs CE, points (higher is better)")), strict=True):
        d = contrasts[contrasts.metric == metric].reset_index(drop=True)
        y = np.arange(len(d))[::-1]
        has_ci = d.lo.notna()
        a.errorbar(d["mean"][has_ci], y[has_ci], xerr=[(d["mean"] - d.lo)[has_ci], (d.hi - d["mean"])[has_ci]],
                   fmt="o", color="C0", ecolor="C0", capsize=3, ms=4)
        a.plot(d["mean"][~has_ci], y[~has_ci], "o", mfc="none", color="C0", ms=4)  # one seed: a point only
        a.axvline(0, color="0.4", lw=1)
        a.set_yticks(y, [f"{m}{' (primary)' if p else ''}" for m, p in zip(d.method, d.primary, strict=True)],
                     fontsize=7)
        for t, p in zip(a.get_yticklabels(), d.primary, strict=True):
            t.set_fontweight("bold" if p else "normal")
        n = int(d.seeds.max()) if len(d) else 0
        title = f"{n} seeds, 95% CI" if n >= 2 else "smoke test, not evidence: 1 seed"
        if len(d) and d.verdict.str.contains("at chance").all():
            title += "; scores at chance: no verdict"
        a.set(xlabel=label, title=title)
    fig.tight_layout()
    return fig
