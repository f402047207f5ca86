# Tokenizer overlap (Σ∩ and translation tables) and LSAP's Table 1 with real LMs.


rule translation:
    input:
        student=f"{R}/tokenizers/student/tokenizer.json",
        surrogate=f"{R}/tokenizers/surrogate/tokenizer.json",
    output:
        f"{R}/vocab/translation.npz",
    params:
        lsap=LSAP,
        config=CONFIG,
        student=lambda w, input: os.path.dirname(input.student),
        surrogate=lambda w, input: os.path.dirname(input.surrogate),
    log:
        f"{R}/logs/translation.log",
    benchmark:
        f"{R}/benchmarks/translation.tsv",
    conda:
        ENV
    shell:
        "{params.lsap} translation --config {params.config} --student {params.student} "
        "--surrogate {params.surrogate} --out {output} > {log} 2>&1"


rule overlap:
    input:
        corpus=f"{R}/corpus/manifest.json",
        student=f"{R}/tokenizers/student/tokenizer.json",
        surrogate=f"{R}/tokenizers/surrogate/tokenizer.json",
        assets=lsap_config.asset_markers(lsap_config.analysis_assets(config)),
    output:
        multiext(f"paper_tables/{RUN}/tokenizer_overlap", ".md", ".tex", ".csv"),
    params:
        lsap=LSAP,
        config=CONFIG,
        config_hash=lsap_config.section_hash(config, "analysis"),
        corpus=lambda w, input: os.path.dirname(input.corpus),
        student=lambda w, input: os.path.dirname(input.student),
        surrogate=lambda w, input: os.path.dirname(input.surrogate),
        stem=lambda w, output: os.path.splitext(output[0])[0],
    log:
        f"{R}/logs/overlap.log",
    benchmark:
        f"{R}/benchmarks/overlap.tsv",
    conda:
        ENV
    shell:
        "{params.lsap} overlap --config {params.config} --corpus {params.corpus} "
        "--student {params.student} --surrogate {params.surrogate} --out {params.stem} > {log} 2>&1"


rule table1:
    input:
        corpus=f"{R}/corpus/manifest.json",
        assets=lsap_config.asset_markers(lsap_config.analysis_assets(config)),
        trained=[f"{R}/references/{m['name']}/summary.json" for m in config["analysis"]["table1"]["models"]
                 if m["kind"] == "trained"],
    output:
        json=f"{R}/analysis/table1.json",
        table=multiext(f"paper_tables/{RUN}/table1", ".md", ".tex", ".csv"),
        figure=multiext(f"figures/{RUN}/table1_counts", ".png", ".pdf"),
    params:
        lsap=LSAP,
        config=CONFIG,
        config_hash=lsap_config.section_hash(config, "analysis"),
        corpus=lambda w, input: os.path.dirname(input.corpus),
        table=lambda w, output: os.path.splitext(output.table[0])[0],
        figure=lambda w, output: os.path.splitext(output.figure[0])[0],
    resources:
        gpu=config["compute"]["gpus"],
    log:
        f"{R}/logs/table1.log",
    benchmark:
        f"{R}/benchmarks/table1.tsv",
    conda:
        ENV
    shell:
        "{params.lsap} table1 --config {params.config} --corpus {params.corpus} --out-json {output.json} "
        "--out-table {params.table} --out-figure {params.figure} > {log} 2>&1"
