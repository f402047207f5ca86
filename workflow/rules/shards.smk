# Packed token shards per tokenizer role and split (memmaps + manifests).


rule shards:
    input:
        corpus=f"{layout.corpus(RUN)}/manifest.json",
        tokenizer=f"{layout.tokenizer(RUN, '{role}')}/tokenizer.json",
    output:
        bins=expand(f"{layout.shards(RUN, '{{role}}')}/{{split}}.bin", split=SPLITS),
        manifests=expand(f"{layout.shards(RUN, '{{role}}')}/{{split}}.json", split=SPLITS),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("shards"),
        corpus=lambda w, input: os.path.dirname(input.corpus),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        out=lambda w, output: os.path.dirname(output.bins[0]),
    wildcard_constraints:
        role="student|surrogate",
    log:
        f"{R}/logs/shards_{{role}}.log",
    benchmark:
        f"{R}/benchmarks/shards_{{role}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} shards --config {params.config} --key {params.key} --tokenizer {params.tokenizer} "
        "--corpus {params.corpus} --out {params.out} > {log} 2>&1"
