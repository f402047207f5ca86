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
        name="surrogate|reference|teacher",
    threads: 2  # torch uses every core it is given; two runs side by side would only thrash
    resources:
        gpu=GPUS,
    log:
        f"{R}/logs/references_{{name}}.log",
    conda:
        ENV
    shell:
        "{params.train} train --config {params.config} --role {wildcards.name} --tokenizer {params.tokenizer} "
        "--shards {params.shards} --split {params.split} --out {params.out} > {log} 2>&1"


rule student:
    input:
        tokenizer=f"{R}/tokenizers/student/tokenizer.json",
        shards=f"{R}/shards/student/train.json",
    output:
        f"{R}/students/{{method}}-s{{seed}}/summary.json",
    params:
        train=TRAIN,
        config=CONFIG,
        config_hash=lsap_config.section_hash(config, "students", "training"),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
        shards=lambda w, input: os.path.dirname(input.shards),
        out=lambda w, output: os.path.dirname(output[0]),
    wildcard_constraints:
        seed=r"\d+",
    threads: 2  # torch uses every core it is given; two runs side by side would only thrash
    resources:
        gpu=GPUS,
    log:
        f"{R}/logs/students/{{method}}-s{{seed}}.log",
    conda:
        ENV
    shell:
        "{params.train} train --config {params.config} --role student --method {wildcards.method} "
        "--seed {wildcards.seed} --tokenizer {params.tokenizer} --shards {params.shards} "
        "--out {params.out} > {log} 2>&1"
