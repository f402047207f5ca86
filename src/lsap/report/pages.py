"""The Snakemake report's own text, written from the run's results: the landing page (the verdict,
every contrast with CE, what the run was) and each figure's caption.

Static captions cannot say what a run can: a one-seed run must read "smoke test, not evidence"
where a reader looks, and the intervals drawn depend on the seeds. Snakemake renders these files
with Jinja2, then as reStructuredText, so everything taken from the run is escaped for both.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from lsap.io.files import write_text

DESCRIPTION = "description"  # the landing page's file, beside the figure captions


def esc(text: str) -> str:
    """Literal text in reStructuredText (inline markup characters backslash-escaped) that Jinja2
    leaves alone (no '{{', '{%', '{#' survives)."""
    text = re.sub(r"([\\*`|_<>\[\]@:])", r"\\\1", str(text))  # @ and : would start links
    return text.replace("{", "{\u200b")  # a zero-width space keeps '{{' / '{%' from opening a Jinja tag


def _seeds_phrase(n_seeds: int) -> str:
    if n_seeds >= 2:
        return f"mean over {n_seeds} seeds with its 95 % t-interval (band between checkpoints, bar at each)"
    return "one seed, so no band: **smoke test, not evidence**"


def figure_captions(n_seeds: int, primary: str | None) -> dict[str, str]:
    """The caption of every figure of lsap.report.tables.FIGURES for a run of `n_seeds` seeds."""
    bands = _seeds_phrase(n_seeds)
    prim = f"``{primary}`` − CE is the run's pre-registered contrast; " if primary else ""
    return {
        "contrasts_forest": (
            f"**The result.** Each method minus CE at the matched budget: the minimal-pairs probe where the run has "
            f"it (above 0 is better), held-out bits per byte (below 0 is better; LSAP's objective pays a fixed "
            f"cost there by design) and the benchmark mean (above 0 is better), from one model of every method and "
            f"seed, with the 95 % interval of the pooled contrast. {prim}every other one is exploratory "
            f"(Holm-adjusted in the tables). " + ("Intervals need two seeds or more: this run has one, so the "
                                                 "points are a **smoke test, not evidence**." if n_seeds < 2 else
                                                 f"{n_seeds} seeds per method.")),
        "figure2_score_vs_flops": (
            f"Figure 2 analogue: average zero-shot score against training TFLOPs (teacher/surrogate inference "
            f"included), one line per method, one point per budget checkpoint; {bands}. The dashed line is "
            f"chance on the same tasks: a score near it says nothing about a method."),
        "bpb_vs_flops": f"Held-out bits per byte (mean over corpus domains) against training TFLOPs; {bands}.",
        "loss_vs_flops": ("Each method's training loss (its own objective, so not comparable across methods) and "
                          "validation cross-entropy against training TFLOPs, mean over seeds per method."),
        "heldout_vs_flops": (
            f"Held-out scores against training TFLOPs (mean over corpus domains): bits per byte after a softmax "
            f"temperature fitted on a separate held-out slice, and top-1 / top-5 next-token accuracy; {bands}."),
        "targets_vs_alpha": (
            "LSAP's auxiliary targets per position (mean over each run) against α, with the bound "
            "min(⌈1/α⌉−1, 15): fewer targets as α grows."),
        "table1_counts": (
            "Table 1 analogue: vocabulary entries above probability α per position, per model and corpus "
            "domain (mean over seeds, ± std)."),
    }


def _cell(r) -> str:
    ci = "" if pd.isna(r["lo"]) else f" [{r['lo']:+.3f}, {r['hi']:+.3f}]"
    return f"{r['mean']:+.3f}{ci}"


def _contrast_table(contrasts: pd.DataFrame) -> list[str]:
    """One row per method, its difference to CE (95 % CI) and verdict on bits per byte and on the
    benchmark mean: an RST list-table, narrow enough for the report's text column."""
    metrics = [m for m in ("lsap_minimal_pairs", "bpb_mean", "avg")
               if m != "lsap_minimal_pairs" or (contrasts.metric == m).any()]
    names = {"lsap_minimal_pairs": "Δ probe, points", "bpb_mean": "Δ bits per byte", "avg": "Δ score, points"}
    head = ["method − CE"] + [h for m in metrics for h in (f"{names[m]} [95 % CI]", "verdict")]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    lines += ["   * - " + head[0]] + [f"     - {h}" for h in head[1:]]
    by = {m: g.set_index("metric") for m, g in contrasts.groupby("method", sort=False)}
    for method, g in by.items():
        cells = [esc(method) + (" (primary)" if g.primary.any() else "")]
        for metric in metrics:
            r = g.loc[metric] if metric in g.index else None
            cells += ["–", "–"] if r is None else [_cell(r), esc(r["verdict"])]
        lines += ["   * - " + cells[0]] + [f"     - {c}" for c in cells[1:]]
    return lines


def description(cfg: dict, contrasts: pd.DataFrame, verdict: str, prov: dict) -> str:
    """The report's landing page: the title and the verdict first, where a laptop screen shows them.

    Snakemake centres this text vertically in a panel one screen high, so a page taller than the
    screen loses its top, the title and the verdict, beyond reach of the scroll bar (the previous page
    was 1,208 px tall; a 1366×768 screen showed neither). So it stays a few lines: the title, the
    verdict, one line of where the details are (links to the report's categories), and every
    contrast with CE as a table folded below (opened on demand)."""
    s, n = cfg["students"], len(cfg["students"]["seeds"])
    title = f"LSAP replication: run {esc(cfg['run'])}"
    out = [title, "=" * len(title), "", f"**Verdict.** {esc(verdict)}", ""]
    if n < 2:
        out += ["**Smoke test, not evidence**: one seed per method, so no interval and no verdict.", ""]
    if prov.get("partial"):  # a sweep stopped short: these tables hold the whole block only
        out += [f"**{esc(prov['partial'])}.**", ""]
    out += ["Details in the menu: *Verdict* (every method − CE, with its interval), *Tables* (head to head: "
            "p-values, minimum detectable differences; each file's provenance), *Figures*, *Notebook*. Commit "
            f"{esc(prov['git_commit'])}, config {esc(cfg['run'])} ({esc(prov['config_hash'])}).", ""]
    out += [".. raw:: html", "", f"   <details><summary>Every method − CE at the matched budget "
            f"({s['budget_flops']:.3g} FLOPs per student, {n} seed(s) each)</summary>", ""]
    out += ["Bits per byte: lower is better; benchmark mean: higher is better, no verdict while a model is at "
            "chance.", ""]
    out += _contrast_table(contrasts) + ["", ".. raw:: html", "", "   </details>", ""]
    return "\n".join(out)


def write(cfg: dict, contrasts: pd.DataFrame, verdict: str, prov: dict, out: Path, figures: tuple[str, ...]) -> None:
    """out/description.rst and out/<figure>.rst for every name in `figures`."""
    n = len(cfg["students"]["seeds"])
    captions = figure_captions(n, cfg["students"]["primary_contrast"])
    missing = [f for f in figures if f not in captions]
    if missing:
        raise KeyError(f"figures without a caption in lsap.report.pages.figure_captions: {missing}")
    for name in figures:
        write_text(out / f"{name}.rst", captions[name] + "\n")
    write_text(out / f"{DESCRIPTION}.rst", description(cfg, contrasts, verdict, prov))
