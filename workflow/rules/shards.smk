# Packed token shards per tokenizer role and split: one cluster job per corpus part (scatter),
# then the split manifests that list the parts (gather); training reads them as one dataset.


rule shards_part:
    input:
        corpus=f"{layout.corpus(RUN)}/{{part}}/manifest.json",
        tokenizer=f"{layout.tokenizer(RUN, '{role}')}/tokenizer.json",
    output:
        bins=expand(f"{layout.shards(RUN, '{{role}}')}/{{{{part}}}}/{{split}}.bin", split=SPLITS),
        manifests=expand(f"{layout.shards(RUN, '{{role}}')}/{{{{part}}}}/{{split}}.json", split=SPLITS),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("shards"),
        corpus=lambda w, input: os.path.dirname(input.corpus),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        out=lambda w, output: os.path.dirname(output.bins[0]),
    wildcard_constraints:
        role="student|surrogate",
        part=r"part-\d{3}",
    log:
        f"{R}/logs/shards_{{role}}_{{part}}.log",
    benchmark:
        f"{R}/benchmarks/shards_{{role}}_{{part}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} shards --config {params.config} --key {params.key} --tokenizer {params.tokenizer} "
        "--corpus {params.corpus} --out {params.out} > {log} 2>&1"


rule shards:
    """The split manifests of all parts (a few JSON files and unigram counts: a local rule)."""
    input:
        expand(f"{layout.shards(RUN, '{{role}}')}/{{part}}/{{split}}.json", part=PARTS, split=SPLITS),
    output:
        expand(f"{layout.shards(RUN, '{{role}}')}/{{split}}.json", split=SPLITS),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("shards"),
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        role="student|surrogate",
    log:
        f"{R}/logs/shards_{{role}}.log",
    conda:
        ENV
    shell:
        "{params.lsap} shards --config {params.config} --key {params.key} --gather --out {params.out} > {log} 2>&1"
