# References stage (surrogate / MiniPLM reference / SALT teacher) and the student runs: all
# through the one training loop, each resumable from its last checkpoint.


rule reference_model:
    input:
        tokenizer=lambda w: f"{R}/tokenizers/{config['references'][w.name]['tokenizer']}/tokenizer.json",
        shards=lambda w: f"{R}/shards/{config['references'][w.name]['tokenizer']}/train.json",
    output:
        f"{R}/references/{{name}}/summary.json",
    params:
        train=TRAIN,
        config=CONFIG,
        config_hash=lambda w: lsap_config.section_hash(config["references"], w.name),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        shards=lambda w, input: os.path.dirname(input.shards),
        split=lambda w: config["references"][w.name]["split"],
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        name="|".join(lsap_config.REFERENCE_ROLES),
    threads: 2  # torch uses every core it is given; two runs side by side would only thrash
    resources:
        gpu=GPUS,
    log:
        f"{R}/logs/references_{{name}}.log",
    benchmark:
        f"{R}/benchmarks/references_{{name}}.tsv",
    conda:
        ENV
    shell:
        "{params.train} train --config {params.config} --role {wildcards.name} --tokenizer {params.tokenizer} "
        "--shards {params.shards} --split {params.split} --out {params.out} > {log} 2>&1"


def _trained(role):
    """The summary of a model this run trains, when a method's teacher is one (else nothing)."""
    spec = config["students"]["teachers"][role]
    return [f"{R}/references/{spec['name']}/summary.json"] if spec["kind"] == "trained" else []


def student_inputs(w):
    m = config["methods"][w.method]
    ins = {"tokenizer": f"{R}/tokenizers/student/tokenizer.json", "shards": f"{R}/shards/student/train.json"}
    for role in lsap_config.teacher_roles(m):
        ins[role] = _trained(role)
    if m["objective"] in ("lsap", "kd"):
        ins["translation"] = f"{R}/vocab/translation.npz"
    if m["objective"] == "lsap" and m["targets"] == "cached":
        ins["targets"] = f"{R}/targets/k{m['top_k']}-{m['probabilities']}/meta.json"
    if m["data"] != "all":
        ins["scores"] = f"{R}/selection/{m['data']}/scores.npy"
    return ins


def _flag(name, path):
    return f"--{name} {os.path.dirname(path) if name == 'targets' else path}" if path else ""


rule targets:
    """LSAP's surrogate candidates for every training sequence, once; each α run filters them."""
    input:
        unpack(lambda w: {"tokenizer": f"{R}/tokenizers/student/tokenizer.json",
                          "shards": f"{R}/shards/student/train.json",
                          "translation": f"{R}/vocab/translation.npz", "surrogate": _trained("surrogate")}),
    output:
        f"{R}/targets/k{{k}}-{{probabilities}}/meta.json",
    params:
        lsap=LSAP,
        config=CONFIG,
        config_hash=lsap_config.section_hash(config["students"], "teachers"),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        shards=lambda w, input: os.path.dirname(input.shards),
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        k=r"\d+",
        probabilities="surrogate|renormalised",
    threads: 2
    resources:
        gpu=GPUS,
    log:
        f"{R}/logs/targets_k{{k}}-{{probabilities}}.log",
    benchmark:
        f"{R}/benchmarks/targets_k{{k}}-{{probabilities}}.tsv",
    conda:
        ENV
    shell:
        "{params.lsap} targets --config {params.config} --tokenizer {params.tokenizer} --shards {params.shards} "
        "--translation {input.translation} --top-k {wildcards.k} --probabilities {wildcards.probabilities} "
        "--out {params.out} > {log} 2>&1"


rule student:
    input:
        unpack(student_inputs),
    output:
        f"{R}/students/{{method}}-s{{seed}}/summary.json",
    params:
        train=TRAIN,
        config=CONFIG,
        config_hash=lambda w: lsap_config.section_hash(config, "students", "training")
        + lsap_config.section_hash(config["methods"], w.method),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        shards=lambda w, input: os.path.dirname(input.shards),
        extra=lambda w, input: " ".join(_flag(k, input.get(k)) for k in ("translation", "targets", "scores")),
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        seed=r"\d+",
        method="|".join(re.escape(m) for m in config["methods"]),
    threads: 2  # torch uses every core it is given; two runs side by side would only thrash
    resources:
        gpu=GPUS,
    log:
        f"{R}/logs/students/{{method}}-s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/students/{{method}}-s{{seed}}.tsv",
    conda:
        ENV
    shell:
        "{params.train} train --config {params.config} --role student --method {wildcards.method} "
        "--seed {wildcards.seed} --tokenizer {params.tokenizer} --shards {params.shards} {params.extra} "
        "--out {params.out} > {log} 2>&1"


def _selection_method(kind):
    """The first student method selecting data this way: its knobs (ds_top_k, ds_zeros) score."""
    return next(n for n, m in config["methods"].items() if m["data"] == kind)


rule selection:
    """Score every training sequence with frozen LMs (MiniPLM's difference, SALT_DS's median
    top-k loss); incremental, so a killed job resumes where it stopped."""
    input:
        unpack(lambda w: {"tokenizer": f"{R}/tokenizers/student/tokenizer.json",
                          "shards": f"{R}/shards/student/train.json",
                          **{role: _trained(role) for role in lsap_config.SELECTION_ROLES[w.kind]}}),
    output:
        f"{R}/selection/{{kind}}/scores.npy",
        f"{R}/selection/{{kind}}/scores.json",
    params:
        lsap=LSAP,
        config=CONFIG,
        config_hash=lambda w: lsap_config.section_hash(config["students"], "teachers")
        + lsap_config.section_hash(config["methods"], _selection_method(w.kind)),
        method=lambda w: _selection_method(w.kind),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        shards=lambda w, input: os.path.dirname(input.shards),
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        kind="miniplm|salt_ds",
    threads: 2
    resources:
        gpu=GPUS,
    log:
        f"{R}/logs/selection_{{kind}}.log",
    benchmark:
        f"{R}/benchmarks/selection_{{kind}}.tsv",
    conda:
        ENV
    shell:
        "{params.lsap} select --config {params.config} --method {params.method} --tokenizer {params.tokenizer} "
        "--shards {params.shards} --out {params.out} > {log} 2>&1"
