# Pinned registry assets (config/assets.yaml) -> resources/<name>/, verified by sha256.


rule asset:
    output:
        "resources/{asset}/.verified",
    params:
        lsap=LSAP,
        config=CONFIG,
    log:
        "results/logs/assets/{asset}.log",
    benchmark:
        "results/benchmarks/assets/{asset}.tsv",
    conda:
        ENV
    shell:
        "{params.lsap} assets --config {params.config} --name {wildcards.asset} > {log} 2>&1"
