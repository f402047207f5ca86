# The models trained for the methods (surrogate / MiniPLM reference / SALT and MiniPLM teachers),
# LSAP's targets cache, the data selections, and the student runs: all through the one training
# loop, each resumable from its last checkpoint. Paths: lsap.io.layout; keys: lsap.keys.


rule reference_model:
    input:
        tokenizer=lambda w: f"{_reference_tokenizer(w)}/tokenizer.json",
        shards=lambda w: f"{layout.shards(RUN, config['references'][w.name]['tokenizer'])}/train.json",
    output:
        f"{layout.reference(RUN, '{name}')}/summary.json",
    params:
        lsap=TRAIN,
        config=CONFIG,
        key=key("reference_model"),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        shards=lambda w, input: os.path.dirname(input.shards),
        split=lambda w: config["references"][w.name]["split"],
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        name="|".join(lsap_config.REFERENCE_ROLES),
    threads: THREADS
    resources:
        gpu=GPUS,
    log:
        f"{R}/logs/references_{{name}}.log",
    benchmark:
        f"{R}/benchmarks/references_{{name}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} train --config {params.config} --key {params.key} --role {wildcards.name} --tokenizer {params.tokenizer} "
        "--shards {params.shards} --split {params.split} --out {params.out} > {log} 2>&1"


rule targets:
    """LSAP's surrogate candidates for the sequences one seed's runs read; each α run filters them."""
    input:
        unpack(lambda w: {"tokenizer": STUDENT_TOKENIZER, "shards": STUDENT_SHARDS,
                          "translation": layout.translation(RUN), "surrogate": _trained("surrogate")}),
    output:
        f"{layout.targets(RUN, '{spec}', '{seed}')}/meta.json",
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("targets"),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        shards=lambda w, input: os.path.dirname(input.shards),
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        spec=r"k\d+-[a-z]+-[0-9a-f]+",
        seed=r"\d+",
    threads: THREADS
    resources:
        gpu=GPU_ONE,
    log:
        f"{R}/logs/targets_{{spec}}-s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/targets_{{spec}}-s{{seed}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} targets --config {params.config} --key {params.key} --tokenizer {params.tokenizer} --shards {params.shards} "
        "--translation {input.translation} --spec {wildcards.spec} --seed {wildcards.seed} "
        "--out {params.out} > {log} 2>&1"


rule student:
    input:
        unpack(student_inputs),
    output:
        f"{layout.student(RUN, '{method}', '{seed}')}/summary.json",
    params:
        lsap=TRAIN,
        config=CONFIG,
        key=key("student"),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        shards=lambda w, input: os.path.dirname(input.shards),
        extra=lambda w, input: " ".join(_flag(k, input.get(k)) for k in ("translation", "targets", "scores")),
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        seed=r"\d+",
        method="|".join(re.escape(m) for m in config["methods"]),
    threads: THREADS
    resources:
        gpu=GPUS,
    log:
        f"{R}/logs/students/{{method}}-s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/students/{{method}}-s{{seed}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} train --config {params.config} --key {params.key} --role student --method {wildcards.method} "
        "--seed {wildcards.seed} --tokenizer {params.tokenizer} --shards {params.shards} {params.extra} "
        "--out {params.out} > {log} 2>&1"


rule selection_part:
    """Score one batch-aligned range of the training sequences (or of a pool) with frozen LMs
    (MiniPLM's difference, SALT_DS's median top-k loss): compute.scoring_parts one-GPU jobs per
    scoring spec, each written atomically at its end."""
    input:
        unpack(lambda w: {"tokenizer": STUDENT_TOKENIZER, "shards": STUDENT_SHARDS,
                          **{role: _trained(role) for role in methods.DATA[w.spec.split("-")[0]].roles}}),
    output:
        f"{layout.selection(RUN, '{spec}')}/parts/part-{{part}}.npz",
        f"{layout.selection(RUN, '{spec}')}/parts/part-{{part}}.json",
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("selection"),
        parts=config["compute"]["scoring_parts"],  # another split rescores (the ranges move)
        index=lambda w: int(w.part),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        shards=lambda w, input: os.path.dirname(input.shards),
        out=lambda w, output: os.path.dirname(os.path.dirname(output[0])),
    wildcard_constraints:
        spec=SELECTION_SPEC,
        part=r"\d{3}",
    threads: THREADS
    resources:
        gpu=GPU_ONE,
    log:
        f"{R}/logs/selection_{{spec}}-part-{{part}}.log",
    benchmark:
        f"{R}/benchmarks/selection_{{spec}}-part-{{part}}.tsv"
    conda:
        ENV
    shell:
        "{params.lsap} select --config {params.config} --key {params.key} --spec {wildcards.spec} --part {params.index} "
        "--tokenizer {params.tokenizer} --shards {params.shards} --out {params.out} > {log} 2>&1"


rule selection:
    """The scores of one scoring spec, gathered from its parts (checked, concatenated: a local rule)."""
    input:
        lambda w: [f"{layout.selection(RUN, w.spec)}/parts/part-{p:03d}.json"
                   for p in range(config["compute"]["scoring_parts"])],
    output:
        f"{layout.selection(RUN, '{spec}')}/scores.npy",
        f"{layout.selection(RUN, '{spec}')}/scores.json",
    params:
        lsap=LSAP,
        config=CONFIG,
        key=key("selection"),
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        spec=SELECTION_SPEC,
    log:
        f"{R}/logs/selection_{{spec}}.log",
    conda:
        ENV
    shell:
        "{params.lsap} select --config {params.config} --key {params.key} --spec {wildcards.spec} --gather "
        "--out {params.out} > {log} 2>&1"
