"""Every table and figure of a run, rendered from its result files alone.

The report stage (and `make tables`) reads results/<run>/ — the analysis JSON/CSV, each
student's summary and log, each evaluation — and writes paper_tables/<run>/ and figures/<run>/,
with provenance in every file. Nothing here trains or loads a model, so the tables of a cluster
run can be rebuilt on a laptop from the copied results.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from lsap import keys, methods
from lsap.config import lsap_alphas, required_assets
from lsap.data import probe
from lsap.evaluation import benchmarks
from lsap.io import layout
from lsap.io.files import atomic_dir, read_json, write_text
from lsap.report import compute_equivalent, heldout_tables, pages, plots, provenance, results, stats, writers

STUDENT_TABLES = ("table2", "head_to_head", "heldout", "effective_compute", "paper_vs_replication")


def optional_tables(cfg: dict) -> tuple[str, ...]:
    """The tables a run writes beyond STUDENT_TABLES and ANALYSIS_TABLES: the probe table where its
    evaluation asks for a probe; the surrogate's proposals and each objective's predicted cost where
    it runs LSAP."""
    return (("probe",) if probe.wanted(cfg["evaluation"]) else ()) + \
        (("proposals", "objective_cost") if lsap_alphas(cfg) else ())
ANALYSIS_TABLES = ("tokenizer_overlap", "table1")
CAPTIONS = "captions"  # the report's generated text, a folder beside the tables
FIGURES = ("contrasts_forest", "figure2_score_vs_flops", "bpb_vs_flops", "heldout_vs_flops", "loss_vs_flops",
           "targets_vs_alpha", "table1_counts")


def _budget(cfg: dict) -> str:
    s = cfg["students"]
    # an arm at another budget on purpose (CE's budget_factor: gpu-small's ce_paper_ratio) is named
    other = [f"{m} at {methods.budget_factor(cfg['methods'][m]):g}x" for m in s["methods"]
             if methods.budget_factor(cfg["methods"][m]) != 1.0]
    but = f" ({', '.join(other)} of it, on purpose)" if other else ""
    if s["budget_counts"] == "papers":
        return (f"{s['budget_flops']:.3g} FLOPs per run{but}: training + the teachers' inference during training, "
                f"the papers' convention; data scoring and the models trained for a method are listed, not charged")
    return (f"{s['budget_flops']:.3g} FLOPs per run{but}: training, teacher inference, data scoring and the models "
            f"trained for a method all charged (budget_counts: everything)")


def _table2_note(cfg: dict) -> str:
    tasks = [t for t in cfg["evaluation"]["tasks"] if t in results.TASKS]
    na = [t for t in cfg["evaluation"]["tasks"] if t not in results.TASKS]
    at = cfg["evaluation"].get("benchmark_fractions")
    return ((f"{', '.join(na)}: no offline data, n/a. " if na else "") + f"Avg over the {len(tasks)} task(s) scored"
            + (f"; the benchmarks ran at checkpoint fraction(s) {at} only." if at else "."))


def json_steps(results_dir: Path, cfg: dict) -> list[int]:
    """Each student run's step count (its summary)."""
    return [read_json(results_dir / "students" / f"{m}-s{s}" / "summary.json")["steps"]
            for m in cfg["students"]["methods"] for s in cfg["students"]["seeds"]]


def _contrast_note(primary: str | None) -> str:
    return ("from one model of every method and seed (y = method + seed + error) with its 95 % interval, its "
            "p-value — " + (f"{primary} − CE, the config's pre-registered contrast, unadjusted; every other one "
                            "Holm-adjusted" if primary else "every one Holm-adjusted (no primary contrast set)")
            + " —, the minimum detectable difference (MDE: 80 % power at 5 %) and the verdict at 5 %")


def _decontamination_note(cfg: dict, results_dir: Path) -> str:
    """How many training documents corpus.decontaminate removed per domain (the corpus manifest)."""
    if not cfg["corpus"].get("decontaminate"):
        return " The training text was not filtered for near-copies of held-out text (corpus.decontaminate off)."
    manifest = results_dir / "corpus" / "manifest.json"
    if not manifest.is_file():  # results copied without corpus/: the counts live only there
        return " Near-copies of held-out text were removed from the training text; the counts are in " \
               "results/<run>/corpus/manifest.json, not copied here."
    domains = read_json(manifest)["domains"]
    removed = ", ".join(f"{d} {m.get('near_copies_removed', 0):,}" for d, m in domains.items() if m["train"])
    return (f" Near-copies of held-out text removed from the training text (MinHash Jaccard ≥ "
            f"{cfg['corpus']['decontaminate']['threshold']}): {removed}.")


def render_analysis(cfg: dict, results_dir: Path, tables: Path, figures: Path, prov: dict) -> None:
    import matplotlib.pyplot as plt

    from lsap.report import analysis

    ov = cfg["analysis"]["overlap"]
    writers.write_table(writers.read_table(results_dir / "analysis" / "overlap.csv"), tables / "tokenizer_overlap",
                       f"Tokenizer overlap: shared vocabulary Σ∩ (byte strings) and the share of the base's "
                       f"{ov['split']} tokens inside it, per domain", prov, digits=3)
    t1 = cfg["analysis"]["table1"]
    result = read_json(results_dir / "analysis" / "table1.json")
    writers.write_table(analysis.table1_frame(result, cfg), tables / "table1",
                       f"Table 1 analogue: mean number of vocabulary entries with next-token probability "
                       f"> α per position ({t1['examples']} examples × {t1['seq_len']} tokens per domain "
                       f"and seed; mean ± std over seeds {t1['seeds']}), paper rows beside",
                       prov, notes="Our domains stand in for the paper's columns named in brackets "
                       "(– : no counterpart). Paper AVGs are as printed (Llama-3.1-8B α=0.05: the "
                       "printed 3.14 disagrees with its cells' mean 2.75)." + "".join(
                           f" Not loaded: {label} ({m['id']}), marked optional: {m['reason']}"
                           for label, m in result.get("missing", {}).items()))
    fig = plots.figure_table1(result)
    writers.save_figure(fig, figures / "table1_counts", prov)
    plt.close(fig)


def render_students(cfg: dict, results_dir: Path, tables: Path, figures: Path, prov: dict) -> None:
    import matplotlib.pyplot as plt

    df = results.collect(cfg, results_dir)
    write_text(tables / "students.csv", df.to_csv(index=False))  # the rows behind every table below
    steps = max(1, max(json_steps(results_dir, cfg)) // 2000)  # ≤ ~2,000 rows per run: a compact file to commit
    curves = results.curves(cfg, results_dir, every=steps)
    write_text(tables / "curves.csv", curves.to_csv(index=False, float_format="%.6g"))
    ev = cfg["evaluation"]
    n = benchmarks.describe_limit(ev)
    domains = sorted(c[4:] for c in df.columns if c.startswith("bpb_") and c != "bpb_mean")
    lines = read_json(results_dir / "analysis" / "reference_lines.json")
    lines_path = results_dir / "analysis" / "surrogate_lines.json"  # (absent only in a partial report)
    surrogate = read_json(lines_path) if lsap_alphas(cfg) and lines_path.exists() else None
    smoke = stats.smoke_note(len(cfg["students"]["seeds"]))
    writers.write_table(results.table2(df, ev["tasks"]), tables / "table2",
                       f"Table 2 analogue: zero-shot scores (%) at the matched budget ({_budget(cfg)}); lm-eval tasks, "
                       f"{n}, {ev['metric']}; mean over seeds.{smoke}", prov, notes=_table2_note(cfg))
    primary = cfg["students"]["primary_contrast"]
    contrasts = results.contrast_frame(df, primary)
    write_text(tables / "contrasts.csv", contrasts.to_csv(index=False))
    writers.write_table(results.head_to_head(df, domains, primary), tables / "head_to_head",
                       f"Head to head at the matched budget ({_budget(cfg)}): average score ± std over seeds (one "
                       f"seed: ± lm-eval stderr), held-out bits per byte per domain, the mean bits-per-byte "
                       f"difference to CE {_contrast_note(primary)}, tokens, the compute ledger (FLOPs of training, "
                       f"teacher inference, data scoring, models trained for it), training wall-clock.{smoke}",
                       prov, digits=3,
                       notes="Every LSAP α is listed: none is picked as best, because picking on the split it is "
                       "reported on would bias it; the Holm adjustment accounts for the several rows.")
    writers.write_table(heldout_tables.heldout(df, lines, domains, surrogate), tables / "heldout",
                       f"Held-out text at the matched budget ({_budget(cfg)}), every method below the reference "
                       f"lines of its own training text ({lines['train_tokens_counted']:,} tokens counted): a unigram "
                       f"(add-one) and an interpolated Kneser-Ney bigram; and the surrogate, on its own tokenizer. "
                       f"Bits per byte per domain and mean; the mean "
                       f"after one temperature per model fitted on the validation documents that follow the scored "
                       f"ones; top-1 and top-5 next-token accuracy (%, mean of domains); T, the fitted temperature. "
                       f"Mean over seeds.{smoke}", prov, digits=3,
                       notes="Secondary metrics: each charges LSAP by design. Bits per byte is a proper scoring rule "
                       "of the true next token, and LSAP's objective puts its optimum elsewhere (the objective_cost "
                       "table predicts by how much); the fitted temperature removes only a uniform sharpening. "
                       "Top-1 accuracy is not neutral either: at λ = 1 the optimum is flat over the surrogate's "
                       "candidates, so which of them ranks first is arbitrary. The surrogate's top-1 and top-5 are "
                       "over its own tokens: not comparable with the students' (its bits per byte are). A student at "
                       "the unigram line has learnt token frequencies only." + _decontamination_note(cfg, results_dir))
    if probe.wanted(ev):
        writers.write_table(heldout_tables.probe(df, lines, surrogate, primary), tables / "probe",
                           f"The held-out probes at the matched budget ({_budget(cfg)}), accuracy (%) scored by "
                           f"lm-eval as multiple choice (summed log-likelihood of each choice): minimal pairs — a "
                           f"held-out sentence against the same sentence with two adjacent words swapped (chance "
                           f"50 %). The unigram and Kneser-Ney bigram of the training text and the surrogate (its own "
                           f"tokenizer) score the same items. Every student scores the same items, so each difference "
                           f"to CE is item-paired; "
                           f"{_contrast_note(primary if results.primary_metric(df) == results.PROBE else None)}; "
                           f"mean over seeds.{smoke}", prov, digits=2,
                           notes="The primary metric: the paper's claim is benchmark accuracy, which lm-eval reads "
                           "by comparing the likelihoods of whole candidates, and a likelihood comparison between two "
                           "orderings of the same words is nearly blind to the fixed cost LSAP's objective pays in "
                           "bits per byte. A model blind to word order scores 50 % in expectation (the gold sentence "
                           "sits first or second at random; a tie goes to the first choice, as lm-eval's argmax does).")
    if surrogate:
        writers.write_table(heldout_tables.proposals(surrogate, domains), tables / "proposals",
                           "The surrogate's proposals on the held-out slices, through Σ∩ as training reads them: "
                           "how often it gives the true next token p > α (it would be a candidate, were it not the "
                           "CE target), and how many other tokens it puts above α per position (LSAP's extra "
                           "targets).", prov, digits=3,
                           notes="The extra targets are never the true next token, by construction (it is masked "
                           "from the candidates): what they carry is which other tokens the surrogate finds "
                           "plausible there. Whether that is knowledge or regularisation is what the count-matched "
                           "random-target control tells, not this table.")
        writers.write_table(heldout_tables.objective_cost(df, surrogate, cfg), tables / "objective_cost",
                           "What each arm's objective costs in bits per byte by design, beside what it measured: the "
                           "predicted Δ is KL(P ‖ q*) of the objective's own optimum q* (closed form, "
                           "lsap.methods.objective_cost) with the surrogate's next-token distribution P standing in for the "
                           f"data, at up to {surrogate.get('cost_positions_per_domain')} evenly spread student "
                           "positions per domain of the held-out slices, mean over domains; the measured Δ is the "
                           "arm's bits-per-byte difference to CE at the matched budget.", prov, digits=3,
                           notes="Assumes the student could reach its objective's optimum, and that the surrogate's "
                           "distribution is the data's (it is not: the prediction is the cost's size, not its exact "
                           "value). A cosine-annealed λ ends at 0, so its final objective is CE's: what it measures "
                           "above CE is not a fixed cost of its objective. The split normaliser is LSAP at λ / E|v_t|.")
    writers.write_table(compute_equivalent.effective_compute(df), tables / "effective_compute",
                       f"Each method's effect as compute: the CE training FLOPs at which CE's curve (its "
                       f"checkpoints at {sorted(cfg['training']['checkpoint_fractions'])} of its budget, linear in "
                       f"log-FLOPs between them) reaches the method's final bits per byte, as a multiple of the "
                       f"method's own FLOPs; geometric mean over seeds with its 95 % t-interval. Above 1: the method "
                       f"does what more CE compute would.{smoke}", prov,
                       notes="CE's points before its last are checkpoints of one cosine schedule, not annealed runs "
                       "of that budget, which would score better: every ratio here is an upper bound. A method "
                       "better than CE's final point is beyond the curve (no ratio without CE at larger budgets).")
    writers.write_table(results.paper_vs_replication(df, primary), tables / "paper_vs_replication",
                       "Each paper's reported gain over its baseline beside ours over CE at the same budget, in "
                       "points of average score and in bits per byte (negative = better): the difference "
                       f"{_contrast_note(primary)}. A score verdict is withheld while CE or the method is within two "
                       f"standard errors of chance.{smoke}", prov)
    refs = plots.reference_lines(lines, surrogate, domains)  # on every bits-per-byte figure
    for name, draw in (("contrasts_forest", lambda: plots.figure_contrasts(contrasts)),
                       ("figure2_score_vs_flops", lambda: plots.figure_score_vs_flops(df)),
                       ("bpb_vs_flops", lambda: plots.figure_bpb_vs_flops(df, refs)),
                       ("heldout_vs_flops", lambda: plots.figure_heldout_vs_flops(df, refs)),
                       ("loss_vs_flops", lambda: plots.figure_loss_vs_flops(curves)),
                       ("targets_vs_alpha", lambda: plots.figure_targets_vs_alpha(df))):
        fig = draw()
        writers.save_figure(fig, figures / name, prov)
        plt.close(fig)
    # the Snakemake report's landing page and figure captions, from this run (lsap.report.pages)
    pages.write(cfg, contrasts, results.verdict_sentence(contrasts, primary), prov, tables / CAPTIONS, FIGURES)


def render(cfg: dict, results_dir=None, tables=None, figures=None, partial: bool = False) -> None:
    """paper_tables/<run>/ and figures/<run>/ from results/<run>/ (defaults: the run's layout).
    `partial`: over the block of students that is whole (lsap.report.partial), named in every
    file's provenance, where a sweep stopped short; otherwise every student must be there."""
    run, full = cfg["run"], cfg
    results_dir = Path(results_dir or layout.run_dir(run))
    tables, figures = Path(tables or layout.tables(run)), Path(figures or layout.figures(run))
    note, sur_lines = None, results_dir / "analysis" / "surrogate_lines.json"
    if partial:
        from lsap.report import partial as partial_block

        cfg, note = partial_block.complete_block(cfg, results_dir)
        if lsap_alphas(cfg) and not sur_lines.exists():  # a draw that ran out of time before them
            note = f"{note or 'PARTIAL'}; the surrogate's lines were not run (no proposals or objective_cost table)"
    results.check_complete(cfg, results_dir, surrogate_lines=not partial)  # every input whole, before any write
    # the config hash: every job key of the run (a config edit that would change any number, unrun, is seen);
    # the commits whose training code made the students, beside the one that renders
    prov = {**provenance.collect(full, required_assets(full), keys.run_key(full)),
            "trained_at": results.training_commits(cfg, results_dir), **({"partial": note} if note else {})}
    # the set is written whole or not at all: rendered aside, swapped in when every file is there
    with atomic_dir(tables) as t, (contextlib.nullcontext(t) if figures.resolve() == tables.resolve()
                                   else atomic_dir(figures)) as f:
        render_analysis(cfg, results_dir, t, f, prov)
        render_students(cfg, results_dir, t, f, prov)
