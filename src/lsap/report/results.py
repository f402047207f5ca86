"""The student runs gathered into frames, and the paper's comparisons built from them: the
Table 2 analogue, the head-to-head table, paper-vs-replication deltas and three figures.

Inputs per run: summary.json and log.jsonl of the training stage, and the evaluate stage's JSON
(one entry per budget checkpoint). Scores are in percent, as the papers print them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from lsap import methods
from lsap.config import lsap_alphas
from lsap.io import layout
from lsap.report import stats

# LSAP Table 2 (matched 232M TFLOPs), the seven tasks with offline data; TruthfulQA kept aside
TASKS = ["hellaswag", "piqa", "lambada_openai", "arc_easy", "arc_challenge", "winogrande", "openbookqa"]
SHORT = {"hellaswag": "HeSw", "piqa": "PIQA", "lambada_openai": "LMB", "arc_easy": "ARC-E",
         "arc_challenge": "ARC-C", "winogrande": "WinoG", "openbookqa": "OBQA", "truthfulqa_mc2": "TrQA"}
PAPER_LSAP = {  # row -> 7 task scores (HeSw PIQA LMB ARC-E ARC-C WinoG OBQA)
    "ce": [44.09, 65.82, 26.38, 44.03, 22.89, 51.01, 29.49],
    "lsap α=0.01": [45.40, 66.80, 27.20, 47.00, 23.20, 55.20, 29.40],
    "lsap α=0.05": [47.40, 66.80, 30.60, 47.80, 23.40, 57.40, 33.00],
    "lsap α=0.2": [45.40, 67.40, 28.00, 44.40, 24.60, 53.60, 29.60],
    "lsap α=0.05 anneal": [47.40, 69.40, 32.40, 46.60, 26.00, 56.40, 32.20],
}
# the score of guessing, in %: 1 / the number of choices (ARC items have 3-5, 4 in almost all);
# LAMBADA's open-vocabulary word has none
CHANCE = {"hellaswag": 25.0, "piqa": 50.0, "lambada_openai": 0.0, "arc_easy": 25.0, "arc_challenge": 25.0,
          "winogrande": 50.0, "openbookqa": 25.0}
# (method kind, paper, comparison, reported delta in points over the paper's baseline)
PAPER_DELTAS = [
    ("lsap α=0.01", "LSAP", "7-task mean vs CE, OLMo2-1B", None),
    ("lsap α=0.05", "LSAP", "7-task mean vs CE, OLMo2-1B", None),
    ("lsap α=0.2", "LSAP", "7-task mean vs CE, OLMo2-1B", None),
    ("lsap α=0.05 anneal", "LSAP", "7-task mean vs CE, OLMo2-1B", None),
    ("kd", "MiniPLM", "Vanilla KD vs Pre-Train w/o KD, 9-task mean, 200M / 500M / 1.2B", "0.0 / +0.4 / +0.5"),
    ("salt", "SALT", "28-task mean vs BASELINE @100 %, 2.8B student", "+0.62"),
    ("salt_ds", "SALT", "28-task mean vs BASELINE @100 %, 2.8B student", "+0.94"),
    ("miniplm", "MiniPLM", "9-task mean vs Pre-Train w/o KD, 200M / 500M / 1.2B", "+1.4 / +1.6 / +1.7"),
]


class IncompleteResults(RuntimeError):
    """A result file the tables need is missing, unreadable or short: no table is written."""


def _read(path: Path, rule: str, lines: bool = False):
    if not path.exists():
        raise IncompleteResults(f"{path} is missing: rerun snakemake, whose rule '{rule}' builds it (the report "
                                f"runs after it); no table was written")
    text = path.read_text()
    try:
        return [json.loads(line) for line in text.splitlines() if line] if lines else json.loads(text)
    except json.JSONDecodeError as e:
        raise IncompleteResults(f"{path} is truncated or damaged ({e}): delete it and rerun snakemake, whose rule "
                                f"'{rule}' rebuilds it; no table was written") from None


def check_complete(cfg: dict, results_dir: str | Path, surrogate_lines: bool = True) -> None:
    """Every file the tables read is there and whole: the analysis outputs (the surrogate's lines
    unless `surrogate_lines` is False: a partial report names them missing instead), and for every
    (method, seed) its summary, its log up to its last step and an evaluation at every checkpoint
    fraction. A table is complete or not written: a missing run never silently leaves a row out."""
    root = Path(results_dir)
    if not (layout.moved(layout.analysis(cfg["run"], "overlap.csv"), cfg["run"], root)).exists():
        _read(layout.moved(layout.analysis(cfg["run"], "overlap.csv"), cfg["run"], root), "overlap")
    _read(layout.moved(layout.analysis(cfg["run"], "table1.json"), cfg["run"], root), "table1")
    _read(layout.moved(layout.analysis(cfg["run"], "reference_lines.json"), cfg["run"], root), "reference_lines")
    if lsap_alphas(cfg) and surrogate_lines:
        _read(layout.moved(layout.analysis(cfg["run"], "surrogate_lines.json"), cfg["run"], root), "surrogate_lines")
    for name in cfg["students"]["methods"]:
        for seed in cfg["students"]["seeds"]:
            check_run(cfg, root, name, seed)


def check_run(cfg: dict, root: Path, name: str, seed) -> None:
    """One student whole: its summary, its log up to its last step, an evaluation at every checkpoint fraction."""
    want = {round(f, 6) for f in cfg["training"]["checkpoint_fractions"]}
    run = layout.moved(layout.student(cfg["run"], name, seed), cfg["run"], root)
    summary = _read(run / "summary.json", "student")
    log = _read(run / "log.jsonl", "student", lines=True)
    if not log or log[-1]["step"] != summary["steps"]:
        raise IncompleteResults(f"{run / 'log.jsonl'} ends at step {log[-1]['step'] if log else 0} of "
                                f"{summary['steps']}: delete {run} and rerun snakemake (rule 'student'); no "
                                f"table was written")
    path = layout.moved(layout.evaluation(cfg["run"], f"{name}-s{seed}"), cfg["run"], root)
    have = {round(e["fraction"], 6) for e in _read(path, "evaluate").get("checkpoints", [])}
    if want - have:
        raise IncompleteResults(f"{path} has no evaluation at checkpoint fraction(s) {sorted(want - have)}: "
                                f"delete it and rerun snakemake (rule 'evaluate'); no table was written")


# the held-out figures beside bits per byte (lsap.data.heldout): column prefix -> key in the evaluation
HELDOUT = {"cal_bpb": "bpb_calibrated", "top1": "top1", "top5": "top5"}


def training_commits(cfg: dict, results_dir: str | Path) -> list[str]:
    """The commits whose code trained the run's students: each summary's `git_commit`, or, for runs
    trained before summaries held it, the one its final checkpoint's model card names."""
    import re

    root, found = Path(results_dir), []
    for name in cfg["students"]["methods"]:
        for seed in cfg["students"]["seeds"]:
            run = layout.moved(layout.student(cfg["run"], name, seed), cfg["run"], root)
            commit = json.loads((run / "summary.json").read_text()).get("git_commit")
            card = run / "checkpoints" / f"frac-{max(cfg['training']['checkpoint_fractions']):.2f}" / "README.md"
            if commit is None and card.is_file():
                m = re.search(r"commit `([^`]+)`", card.read_text())
                commit = m.group(1) if m else None
            found.append(commit or "unknown")
    return sorted(set(found))


def _at_step(log: list[dict], step: int) -> dict:
    return next(r for r in log if r["step"] == step)


def collect(cfg: dict, results_dir: str | Path) -> pd.DataFrame:
    """One row per (method, seed, checkpoint fraction) with scores, bits per byte and costs."""
    root, rows = Path(results_dir), []
    for name in cfg["students"]["methods"]:
        m = cfg["methods"][name]
        for seed in cfg["students"]["seeds"]:
            run = layout.moved(layout.student(cfg["run"], name, seed), cfg["run"], root)
            summary = json.loads((run / "summary.json").read_text())
            log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]
            evaluation = layout.moved(layout.evaluation(cfg["run"], f"{name}-s{seed}"), cfg["run"], root)
            evals = json.loads(evaluation.read_text())["checkpoints"]
            for e in evals:
                r = _at_step(log, e["step"])
                shows_alpha = "alpha" in methods.OBJECTIVES[m["objective"]].table_fields
                row = {"method": name, "label": methods.label(m), "objective": m["objective"], "data": m["data"],
                       "alpha": m["alpha"] if shows_alpha else np.nan, "seed": seed,
                       "fraction": e["fraction"], "step": e["step"], "tokens": r["tokens"], "flops": r["flops"],
                       "wall_s": sum(summary["tokens"] / summary["steps"] / x["tok_s"] for x in log
                                     if x["step"] <= e["step"]),
                       "val_loss": r.get("val_loss", np.nan),
                       # the compute ledger of the whole run (lsap.training.loop summary)
                       **{f"ledger_{k}": summary.get(f"{k}_flops", np.nan)
                          for k in ("training", "teacher", "selection", "trained_models")},
                       "targets_per_pos": summary.get("mean_targets_per_pos", np.nan)}
                scored = [t for t in TASKS if (e["benchmarks"].get(t) or {}).get("value") is not None]
                for t, b in e["benchmarks"].items():
                    row[t] = 100 * b["value"] if b.get("value") is not None else np.nan
                    row[f"{t}_se"] = 100 * b["stderr"] if b.get("stderr") is not None else np.nan
                row["avg"] = np.mean([row[t] for t in scored]) if scored else np.nan
                row["chance"] = np.mean([CHANCE[t] for t in scored]) if scored else np.nan
                # the mean of independent task scores: stderr = sqrt(Σ se²) / n
                row["avg_se"] = np.sqrt(sum(row[f"{t}_se"] ** 2 for t in scored)) / len(scored) if scored else np.nan
                for dom, d in e["bpb"].items():
                    row[f"bpb_{dom}"] = d["bpb"]
                    for k in HELDOUT:  # evaluations older than lsap.data.heldout's extra figures: n/a
                        row[f"{k}_{dom}"] = np.nan if d.get(HELDOUT[k]) is None else d[HELDOUT[k]]
                row["bpb_mean"] = e["bpb_mean"]
                for k in HELDOUT:
                    row[f"{k}_mean"] = np.mean([row[f"{k}_{dom}"] for dom in e["bpb"]]) if e["bpb"] else np.nan
                row["temperature"] = (e.get("temperature") or {}).get("temperature") or np.nan
                rows.append(row)
    return pd.DataFrame(rows)


CURVE_COLUMNS = ("step", "tokens", "flops", "loss", "ce", "val_loss", "lambda", "targets_per_pos", "pos_with_targets",
                 "student_top_in_targets", "kl")


def curves(cfg: dict, results_dir: str | Path, every: int = 1) -> pd.DataFrame:
    """Every student's training log, one row per logged step (every `every`-th, and the last),
    the columns the notebook plots: the curves travel with the tables, so the notebook opens from
    committed files when results/ is not there."""
    root, frames = Path(results_dir), []
    for name in cfg["students"]["methods"]:
        for seed in cfg["students"]["seeds"]:
            run = layout.moved(layout.student(cfg["run"], name, seed), cfg["run"], root)
            log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]
            rec = pd.DataFrame(log[::every] + ([log[-1]] if (len(log) - 1) % every else []))
            frames.append(rec[[c for c in CURVE_COLUMNS if c in rec]].assign(method=name, seed=seed))
    return pd.concat(frames, ignore_index=True)


def final(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.fraction == df.fraction.max()]


def _pm(mean: float, spread: float, digits: int = 2) -> str:
    return "n/a" if pd.isna(mean) else (f"{mean:.{digits}f} ± {spread:.{digits}f}" if not pd.isna(spread)
                                        else f"{mean:.{digits}f}")


def _seed_mean(g: pd.DataFrame, col: str):
    """Mean over seeds, with the std over seeds (or, with one seed, the evaluation stderr)."""
    if len(g) > 1:
        return g[col].mean(), g[col].std(ddof=1)
    se = f"{col}_se" if f"{col}_se" in g else None
    return g[col].iloc[0], (g[se].iloc[0] if se else np.nan)


def table2(df: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Methods × tasks at the matched budget (the last checkpoint), mean over seeds."""
    fin, out = final(df), []
    scored = sum(t in fin and fin[t].notna().any() for t in tasks)   # the tasks the average is over
    for name, g in fin.groupby("method", sort=False):
        row = {"Method": name, "α": g.alpha.iloc[0] if not pd.isna(g.alpha.iloc[0]) else "–"}
        for t in tasks:
            row[SHORT.get(t, t)] = g[t].mean() if t in g and g[t].notna().any() else np.nan
        row[f"Avg ({scored})"] = g.avg.mean()
        row["seeds"] = len(g)
        out.append(row)
    return pd.DataFrame(out)


def by_seed(fin: pd.DataFrame, method: str, col: str) -> dict:
    g = fin[fin.method == method]
    return dict(zip(g.seed, g[col], strict=True))


def vs_ce(fin: pd.DataFrame, method: str, col: str) -> stats.Interval:
    """method − CE on `col`, paired by seed, with its 95 % t-interval over seeds."""
    return stats.paired(by_seed(fin, method, col), by_seed(fin, methods.BASELINE, col))


def contrasts(fin: pd.DataFrame, col: str, primary: str | None) -> dict:
    """{method: stats.Contrast of method − CE on `col`} from the pooled method + seed model of every
    method at once (the primary contrast alone, the others Holm-adjusted)."""
    return stats.pooled_contrasts({m: by_seed(fin, m, col) for m in fin.method.unique()}, methods.BASELINE, primary)


def _p(c: stats.Contrast) -> str:
    if np.isnan(c.p):
        return "n/a"
    return f"{c.p:.3f} (primary)" if c.primary else f"{c.p:.3f} (Holm {c.p_adj:.3f})"


PROBE = "lsap_minimal_pairs"   # the primary metric where a run's evaluation asks for it (lsap.data.probe)


def primary_metric(df: pd.DataFrame) -> str:
    """The metric of the pre-registered contrast: the minimal-pairs probe where the run has it (a
    likelihood comparison like the paper's benchmarks, which the students can pass), else bits per byte."""
    return PROBE if PROBE in df and df[PROBE].notna().any() else "bpb_mean"


def primary_on(df: pd.DataFrame, col: str, primary: str | None) -> str | None:
    """The pre-registered contrast where `col` is the primary metric; elsewhere it joins the Holm family."""
    return primary if col == primary_metric(df) else None


# (column, lower is better) of every metric a contrast is computed on; the probe first where it exists
def _metrics(df: pd.DataFrame) -> list[tuple[str, bool]]:
    probes = [(c, False) for c in ("lsap_minimal_pairs", "lsap_continuation") if c in df and df[c].notna().any()]
    return probes + [("bpb_mean", True), ("cal_bpb_mean", True), ("top1_mean", False), ("avg", False)]


def contrast_frame(df: pd.DataFrame, primary: str | None) -> pd.DataFrame:
    """Every method − CE at the matched budget, on the probes, bits per byte (raw and calibrated),
    top-1 accuracy and the benchmark mean: one row per (method, metric) with the pooled contrast, its
    p-values, MDE and verdict. The pre-registered contrast is tested alone on the primary metric
    only; on every other metric it joins the Holm family. (The tables, the notebook and the
    report's verdict read this.)"""
    fin, rows = final(df), []
    main = primary_metric(df)
    for col, lower in _metrics(df):
        if col not in fin or fin[col].isna().all():
            continue
        for name, c in contrasts(fin, col, primary if col == main else None).items():
            scored = col == "avg" or col.startswith("lsap_")   # scores with a chance level
            verdict = score_verdict(fin, name, c, col) if scored else c.verdict(lower)
            rows.append({"method": name, "metric": col, "mean": c.mean, "lo": c.lo, "hi": c.hi, "p": c.p,
                         "p_adjusted": c.p_adj, "mde": c.mde, "df": c.df, "seeds": c.n, "primary": c.primary,
                         "verdict": verdict})
    # the columns even with no row (a CE-only run has no contrast): the report and plots read them
    return pd.DataFrame(rows, columns=["method", "metric", "mean", "lo", "hi", "p", "p_adjusted", "mde", "df",
                                       "seeds", "primary", "verdict"])


METRIC_WORDS = {PROBE: ("minimal-pairs probe accuracy", "points", 2),
                "bpb_mean": ("held-out bits per byte", "bits per byte", 3)}


def verdict_sentence(contrasts_df: pd.DataFrame, primary: str | None) -> str:
    """The run's answer in one sentence: the primary contrast on the primary metric, as the tables give it."""
    if not primary:
        return "No primary contrast is set for this run (students.primary_contrast): read every row as exploratory."
    r = contrasts_df[(contrasts_df.method == primary) & contrasts_df.primary.astype(bool)]
    if r.empty:
        r = contrasts_df[(contrasts_df.method == primary) & (contrasts_df.metric == "bpb_mean")]
    if r.empty:
        return f"The primary contrast {primary} − CE has no result."
    r = r.iloc[0]
    what, unit, digits = METRIC_WORDS.get(r.metric, (r.metric, "", 3))
    if np.isnan(r.lo):
        return (f"{primary} − CE in {what}: {r['mean']:+.{digits}f} from {r.seeds} seed(s): no interval, "
                f"no verdict (a smoke test, not evidence).")
    return (f"{primary} − CE in {what}: {r['mean']:+.{digits}f} [95 % CI {r.lo:+.{digits}f}, {r.hi:+.{digits}f}], "
            f"p = {r.p:.3f} over {r.seeds} seeds; verdict: {r.verdict}. This design detects differences of "
            f"{r.mde:.{digits}f} {unit} or more (80 % power).")


def at_chance(g: pd.DataFrame, col: str = "avg") -> bool:
    """A method's score on `col` (the benchmark mean, or a probe) is within two lm-eval standard
    errors of chance."""
    from lsap.data.probe import CHANCE as PROBE_CHANCE

    if col == "avg":
        return bool((g.avg - g.chance).mean() < 2 * g.avg_se.mean())
    return bool(abs(g[col].mean() - PROBE_CHANCE[col]) < 2 * g[f"{col}_se"].mean())


def score_verdict(fin: pd.DataFrame, name: str, c: stats.Contrast, col: str = "avg") -> str:
    if at_chance(fin[fin.method == methods.BASELINE], col) or at_chance(fin[fin.method == name], col):
        return "n/a (at chance)"
    return c.verdict(lower_is_better=False)


LEDGER = {"training": "training FLOPs", "teacher": "teacher inference FLOPs", "selection": "data scoring FLOPs",
          "trained_models": "FLOPs of models trained for it"}


def head_to_head(df: pd.DataFrame, domains: list[str], primary: str | None = None) -> pd.DataFrame:
    """Every method at the matched budget, CE first: no LSAP row is singled out, since choosing
    the best α on the held-out split it is reported on would bias it; only the config's
    pre-registered primary contrast is tested alone."""
    fin = final(df)
    order = [methods.BASELINE] + [m for m in fin.method.unique() if m != methods.BASELINE]
    bpb = contrasts(fin, "bpb_mean", primary_on(df, "bpb_mean", primary))
    out = []
    for name in order:
        g = fin[fin.method == name]
        if g.empty:
            continue
        row = {"Method": name, "Avg score": _pm(*_seed_mean(g, "avg"))}
        for dom in domains:
            row[f"bpb {dom}"] = g[f"bpb_{dom}"].mean()
        c = bpb.get(name)
        row.update({"bpb mean": g.bpb_mean.mean(),
                    "Δ bpb vs CE [95% CI]": "–" if c is None else c.fmt(3),
                    "p": "–" if c is None else _p(c), "MDE bpb": np.nan if c is None else c.mde,
                    "verdict (bpb)": "–" if c is None else c.verdict(lower_is_better=True),
                    "seeds": len(g), "tokens (M)": g.tokens.mean() / 1e6})
        for k, col in LEDGER.items():
            row[col] = f"{g[f'ledger_{k}'].mean():.3g}"
        row["wall (s)"] = g.wall_s.mean()
        out.append(row)
    return pd.DataFrame(out)


def paper_vs_replication(df: pd.DataFrame, primary: str | None = None) -> pd.DataFrame:
    """Each paper's reported gain over its baseline beside ours over CE (same budget): the mean
    difference with its 95 % interval from the pooled method + seed model, in points of average
    score and in bits per byte (negative = better), the p-value (Holm-adjusted unless it is the
    primary contrast), the minimum detectable difference, and the verdict (none for scores at chance)."""
    fin = final(df)
    paper_ce = np.mean(PAPER_LSAP["ce"])
    score = contrasts(fin, "avg", primary_on(df, "avg", primary))
    bpb = contrasts(fin, "bpb_mean", primary_on(df, "bpb_mean", primary))
    out = []
    for label, paper, what, reported in PAPER_DELTAS:
        if reported is None:
            reported = f"{np.mean(PAPER_LSAP[label]) - paper_ce:+.2f}"
        for name in fin[fin.label == label].method.unique():
            d_avg, d_bpb = score[name], bpb[name]
            out.append({"Method": name, "Paper": paper, "Paper's comparison": what, "Paper Δ": reported,
                        "Our Δ avg (pts) [95% CI]": d_avg.fmt(2), "p (score)": _p(d_avg), "MDE pts": d_avg.mde,
                        "verdict (score)": score_verdict(fin, name, d_avg),
                        "Our Δ bpb [95% CI]": d_bpb.fmt(3), "p (bpb)": _p(d_bpb), "MDE bpb": d_bpb.mde,
                        "verdict (bpb)": d_bpb.verdict(lower_is_better=True), "seeds": d_bpb.n})
    return pd.DataFrame(out)


def seed_bands(df: pd.DataFrame, y: str, at: str = "fraction") -> pd.DataFrame:
    """Per (method, `at`: a checkpoint fraction, or a log's step): the mean of `y` over seeds and
    its 95 % t-interval, at the seeds' mean TFLOPs."""
    rows = []
    for (method, where), g in df.groupby(["method", at], sort=False):
        iv = stats.t_interval(g[y])
        rows.append({"method": method, at: where, "tflops": g.flops.mean() / 1e12, "mean": iv.mean,
                     "lo": iv.lo, "hi": iv.hi, "seeds": iv.n})
    return pd.DataFrame(rows)
