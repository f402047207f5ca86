# Cleaned per-domain corpus with hashed train/validation/reference splits, then tokenizers.


rule corpus:
    input:
        lsap_config.asset_markers(lsap_config.corpus_assets(config)),
    output:
        manifest=f"{layout.corpus(RUN)}/manifest.json",
        domains=expand(f"{layout.corpus(RUN)}/{{domain}}.jsonl", domain=list(config["corpus"]["domains"])),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("corpus"),
        out=lambda w, output: os.path.dirname(output.manifest),
    log:
        f"{R}/logs/corpus.log",
    benchmark:
        f"{R}/benchmarks/corpus.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} corpus --config {params.config} --key {params.key} --out {params.out} > {log} 2>&1"


rule tokenizer:
    input:
        corpus=f"{layout.corpus(RUN)}/manifest.json",
        assets=lambda w: lsap_config.asset_markers(lsap_config.tokenizer_assets(config, w.role)),
    output:
        f"{layout.tokenizer(RUN, '{role}')}/tokenizer.json",
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("tokenizer"),
        corpus=lambda w, input: os.path.dirname(input.corpus),
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        role="student|surrogate",
    log:
        f"{R}/logs/tokenizer_{{role}}.log",
    benchmark:
        f"{R}/benchmarks/tokenizer_{{role}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} tokenizer --config {params.config} --key {params.key} --role {wildcards.role} "
        "--corpus {params.corpus} --out {params.out} > {log} 2>&1"
