# Tokenizer overlap (Σ∩ and translation tables) and LSAP's Table 1 with real LMs. These jobs write
# results/<run>/analysis/; the report renders their tables and figures.


rule translation:
    input:
        student=f"{layout.tokenizer(RUN, 'student')}/tokenizer.json",
        surrogate=f"{layout.tokenizer(RUN, 'surrogate')}/tokenizer.json",
    output:
        layout.translation(RUN),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("translation"),
        student=lambda w, input: os.path.dirname(input.student),
        surrogate=lambda w, input: os.path.dirname(input.surrogate),
    log:
        f"{R}/logs/translation.log",
    benchmark:
        f"{R}/benchmarks/translation.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} translation --config {params.config} --key {params.key} --student {params.student} "
        "--surrogate {params.surrogate} --out {output} > {log} 2>&1"


rule overlap:
    input:
        corpus=f"{layout.corpus(RUN)}/manifest.json",
        student=f"{layout.tokenizer(RUN, 'student')}/tokenizer.json",
        surrogate=f"{layout.tokenizer(RUN, 'surrogate')}/tokenizer.json",
        assets=lsap_config.asset_markers(lsap_config.analysis_assets(config, "overlap")),
    output:
        layout.analysis(RUN, "overlap.csv"),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("overlap"),
        corpus=lambda w, input: os.path.dirname(input.corpus),
        student=lambda w, input: os.path.dirname(input.student),
        surrogate=lambda w, input: os.path.dirname(input.surrogate),
    log:
        f"{R}/logs/overlap.log",
    benchmark:
        f"{R}/benchmarks/overlap.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} overlap --config {params.config} --key {params.key} --corpus {params.corpus} "
        "--student {params.student} --surrogate {params.surrogate} --out {output} > {log} 2>&1"


rule table1:
    input:
        corpus=f"{layout.corpus(RUN)}/manifest.json",
        assets=lsap_config.asset_markers(lsap_config.analysis_assets(config, "table1")),
        trained=[f"{layout.reference(RUN, m['name'])}/summary.json" for m in config["analysis"]["table1"]["models"]
                 if m["kind"] == "trained"],
    output:
        layout.analysis(RUN, "table1.json"),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("table1"),
        corpus=lambda w, input: os.path.dirname(input.corpus),
    resources:
        gpu=GPU_ONE,
    log:
        f"{R}/logs/table1.log",
    benchmark:
        f"{R}/benchmarks/table1.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} table1 --config {params.config} --key {params.key} --corpus {params.corpus} --out {output} > {log} 2>&1"
