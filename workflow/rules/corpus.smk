# The cleaned per-domain corpus with hashed train/validation/reference splits, built as
# corpus.parts cluster jobs (scatter) and one manifest that lists them (gather), then tokenizers.
PARTS = [lsap_corpus.part_name(p) for p in range(config["corpus"]["parts"])]


rule corpus_part:
    """One slice of the corpus: a cluster job (it streams its share of a hub dataset)."""
    input:
        lsap_config.asset_markers(lsap_config.corpus_assets(config)),
        HUB_MANIFEST,  # every later job reads the hub only through the snapshot, and follows the corpus
    output:
        manifest=f"{layout.corpus(RUN)}/{{part}}/manifest.json",
        domains=expand(f"{layout.corpus(RUN)}/{{{{part}}}}/{{domain}}.jsonl", domain=list(config["corpus"]["domains"])),
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("corpus"),
        index=lambda w: int(w.part.removeprefix("part-")),
        out=lambda w, output: os.path.dirname(output.manifest),
    wildcard_constraints:
        part=r"part-\d{3}",
    log:
        f"{R}/logs/corpus_{{part}}.log",
    benchmark:
        f"{R}/benchmarks/corpus_{{part}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} corpus --config {params.config} --key {params.key} --part {params.index} "
        "--out {params.out} > {log} 2>&1"


rule corpus:
    """The manifest of all parts (sums of a few JSON files: a local rule)."""
    input:
        expand(f"{layout.corpus(RUN)}/{{part}}/manifest.json", part=PARTS),
    output:
        f"{layout.corpus(RUN)}/manifest.json",
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("corpus"),
        out=lambda w, output: os.path.dirname(output[0]),
    log:
        f"{R}/logs/corpus.log",
    conda:
        ENV
    shell:
        "{params.lsap} corpus --config {params.config} --key {params.key} --gather --out {params.out} > {log} 2>&1"


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
