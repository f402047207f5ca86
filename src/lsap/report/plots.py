"""The run's figures, drawn from the tables' data frames (results.collect, results.contrast_frame):
curves against training compute with seed bands, the contrasts with CE, LSAP's targets per α,
Table 1's per-position counts. Every bits-per-byte figure carries the reference lines (unigram and
Kneser-Ney bigram of the training text, the surrogate): a curve means something only against them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lsap.report.results import final, seed_bands


def _axes(ncols=1, width=5.2):
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt.subplots(1, ncols, figsize=(width * ncols, 3.6), squeeze=False)


def _vs_flops(df: pd.DataFrame, y: str, ylabel: str, title: str, refs: dict[str, float] | None = None):
    """One line per method against training TFLOPs, one point per checkpoint: the mean over seeds
    with its 95 % t-interval as a band (none with one seed); `refs`, horizontal reference lines."""
    fig, ax = _axes()
    _bands_on(ax[0, 0], df, y, ylabel, title, refs)
    return fig


def reference_lines(lines: dict, surrogate: dict | None, domains: list[str]) -> dict[str, float]:
    """label -> held-out bits per byte (mean of `domains`) of the reference models: the unigram and
    the interpolated Kneser-Ney bigram of the students' training text (reference_lines.json), and the
    surrogate on its own tokenizer (surrogate_lines.json, where the run has LSAP)."""
    out = {"unigram (training text)": float(np.mean([lines["unigram"][d]["bpb"] for d in domains])),
           "KN bigram (training text)": float(np.mean([lines["bigram"][d]["bpb"] for d in domains]))}
    if surrogate:
        out["surrogate (own tokenizer)"] = float(np.mean([surrogate["heldout"][d]["bpb"] for d in domains]))
    return out


REF_STYLE = {"unigram": (":", "0.35"), "KN bigram": ("--", "0.35"), "surrogate": ("-.", "0.15")}


def _refs_on(a, refs: dict[str, float] | None) -> None:
    """Each reference as a labelled horizontal line (grey, one dash style each)."""
    for label, value in (refs or {}).items():
        ls, color = next((v for k, v in REF_STYLE.items() if label.startswith(k)), ("-", "0.5"))
        a.axhline(value, ls=ls, color=color, lw=1, label=f"{label}: {value:.3f}")


def _bands_on(a, df: pd.DataFrame, y: str, ylabel: str, title: str, refs: dict[str, float] | None = None) -> None:
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
    _refs_on(a, refs)
    n = int(bands.seeds.max()) if len(bands) else 0
    a.set(xlabel="training TFLOPs (teacher inference included)", ylabel=ylabel,
          title=title + (f" ({n} seeds, 95% t-bands)" if n >= 2 else " (smoke test, not evidence: 1 seed)"))
    a.legend(fontsize=6, ncols=2)


def figure_heldout_vs_flops(df: pd.DataFrame, refs: dict[str, float] | None = None):
    """The held-out figures beside bits per byte against compute: after the fitted temperature (with
    the reference lines), top-1 and top-5 next-token accuracy (mean of domains)."""
    fig, ax = _axes(ncols=3, width=4.6)
    for a, (col, label) in zip(ax[0], (("cal_bpb_mean", "bits per byte at the fitted temperature"),
                                       ("top1_mean", "top-1 next-token accuracy"),
                                       ("top5_mean", "top-5 next-token accuracy")), strict=True):
        _bands_on(a, df, col, label, label.split(" at ")[0].capitalize(), refs if col == "cal_bpb_mean" else None)
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


def figure_bpb_vs_flops(df: pd.DataFrame, refs: dict[str, float] | None = None):
    return _vs_flops(df, "bpb_mean", "bits per byte (mean of domains)", "Held-out bits per byte vs compute", refs)


MARKERS = "osD^vP*X"


def figure_targets_vs_alpha(df: pd.DataFrame):
    """Mean auxiliary targets per position over each LSAP run (mean over seeds), against α, with the
    ⌈1/α⌉−1 bound. Runs at the same α (LSAP, annealed, the random control) are spread sideways, each
    with its own marker, so no dot hides another."""
    import matplotlib.ticker as mticker
    import seaborn as sns

    fig, ax = _axes()
    a = ax[0, 0]
    d = final(df)[final(df).alpha.notna()]   # the methods whose tables show an α (LSAP)
    labels = list(dict.fromkeys(d.label))
    colors = sns.color_palette("tab10", max(len(labels), 1))
    for i, label in enumerate(labels):
        g = d[d.label == label]
        # one dot per run (mean over seeds, bar from the lowest to the highest seed); the i-th run at
        # an α sits at α·10^(0.04·(i − centre)): a fixed step on the log axis
        same = [lab for lab in labels if d[d.label == lab].alpha.iloc[0] == g.alpha.iloc[0]]
        x = g.alpha.iloc[0] * 10 ** (0.04 * (same.index(label) - (len(same) - 1) / 2))
        y = g.targets_per_pos.mean()
        a.errorbar([x], [y], yerr=[[y - g.targets_per_pos.min()], [g.targets_per_pos.max() - y]], fmt="none",
                   ecolor=colors[i], elinewidth=1, capsize=2, zorder=2)
        a.scatter([x], [y], s=40, marker=MARKERS[i % len(MARKERS)], color=colors[i], edgecolor="white",
                  linewidth=0.6, label=f"{label} ({len(g)} seed{'s' if len(g) > 1 else ''})", zorder=3)
    alphas = np.geomspace(d.alpha.min() / 1.5 if len(d) else 0.01, 0.5, 200)
    a.plot(alphas, np.minimum(np.ceil(1 / alphas) - 1, 15), color="0.6", lw=1, ls="--",
           label="bound min(⌈1/α⌉−1, 15)")
    a.set(xscale="log", yscale="log")
    ticks = sorted(set(d.alpha)) or [0.01, 0.1]
    a.xaxis.set_minor_formatter(mticker.NullFormatter())  # log minor labels ran into each other
    a.set_xticks(ticks, [f"{t:g}" for t in ticks])
    a.set(xlabel="α (runs at one α spread sideways)",
          ylabel="auxiliary targets per position", title="Surrogate targets per position (run mean)")
    a.legend(fontsize=6)
    return fig


def figure_table1(result: dict):
    """Table 1 analogue: per domain, the distribution of the per-position count above α, one panel
    per model (rows, named at the right margin) and α (columns): facet titles stay short, so long
    model names never run into the next panel's title."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = []
    for label, m in result["models"].items():
        for d, by_a in m["histograms"].items():
            for a, h in by_a.items():
                top = math.ceil(1 / float(a)) - 1  # at most ⌈1/α⌉−1 entries hold more than α (analysis.max_count)
                rows += [{"model": label, "domain": d, "α": float(a), "count": k, "share": n / max(sum(h), 1)}
                         for k, n in enumerate(h) if k <= top]
    df = pd.DataFrame(rows)
    if df.empty:  # every model optional and none loaded
        fig = plt.figure(figsize=(5, 1.5))
        fig.text(0.5, 0.5, "Table 1: no model loaded (see the table's notes)", ha="center")
        return fig
    sns.set_theme(style="whitegrid", context="paper")
    g = sns.relplot(data=df, x="count", y="share", hue="domain", col="α", row="model", kind="line", marker="o",
                    facet_kws={"sharex": False, "sharey": False, "margin_titles": True}, height=2.6, aspect=1.2)
    g.set_titles(col_template="α = {col_name}", row_template="{row_name}")
    g.set_axis_labels("entries with p > α at a position", "share of positions")
    g.figure.suptitle("Table 1 analogue: how many tokens a surrogate proposes", y=1.02)
    return g.figure


CONTRAST_PANELS = (("lsap_minimal_pairs", "Δ minimal-pairs probe accuracy vs CE, points (higher is better)"),
                   ("bpb_mean", "Δ bits per byte vs CE (lower is better; charged by design, see objective_cost)"),
                   ("avg", "Δ average score vs CE, points (higher is better)"))


def figure_contrasts(contrasts: pd.DataFrame):
    """The headline: every method − CE at the matched budget, one row per method, on the probe where
    the run has it, bits per byte and the benchmark mean, each with its 95 % interval; the primary
    contrast in bold."""
    panels = [(m, lab) for m, lab in CONTRAST_PANELS if m != "lsap_minimal_pairs" or (contrasts.metric == m).any()]
    fig, ax = _axes(ncols=len(panels), width=4.4)
    for a, (metric, label) in zip(ax[0], panels, strict=True):
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
        a.set_xlabel(label, fontsize=7)
        a.set_title(title)
    fig.tight_layout()
    return fig


def figure_loss_vs_flops(curves: pd.DataFrame):
    """Each student's training loss (and validation loss where logged) against training TFLOPs, the
    mean over seeds per method: what each objective optimises, on its own scale."""
    fig, ax = _axes(ncols=2, width=4.4)
    for a, col, title in ((ax[0][0], "loss", "training objective (each method's own loss)"),
                          (ax[0][1], "val_loss", "validation cross-entropy, nats per token")):
        for i, (method, g) in enumerate(curves.groupby("method", sort=False)):
            g = g.dropna(subset=[col]) if col in g else g.iloc[0:0]
            if g.empty:
                continue
            m = g.groupby("step").agg(flops=("flops", "mean"), y=(col, "mean"))
            a.plot(m.flops / 1e12, m.y, color=f"C{i % 10}", lw=1, label=method)
        a.set(xlabel="training TFLOPs", title=title)
    ax[0][0].legend(fontsize=6)
    fig.tight_layout()
    return fig
