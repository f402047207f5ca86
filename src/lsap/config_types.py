"""Static types of the validated config (config/schema.yaml is the source of truth; these mirror
the sections the code reads, so editors and type checkers see the keys). After
`lsap.config.validate` every key below is present: the schema fills in the defaults."""

from __future__ import annotations

from typing import TypedDict


class ModelSpec(TypedDict, total=False):
    arch: str               # olmo2 | qwen3
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tie_embeddings: bool


class Source(TypedDict, total=False):
    kind: str               # trained | pretrained | hub
    name: str
    id: str


class Training(TypedDict):
    micro_batch: int
    grad_accum: int
    global_batch: int  # optional: sequences per step over all GPUs (plan.accumulation)
    lr: float
    betas: list[float]
    weight_decay: float
    warmup_frac: float
    min_lr_frac: float
    grad_clip: float
    checkpoint_fractions: list[float]
    save_every_steps: int | None
    save_every_minutes: float | None
    eval_sequences: int
    compile: bool
    tensorboard: bool        # the curves as TensorBoard event files too (no key reads it)


# a method entry (`methods.<name>`) is typed by its plugins' knobs (lsap.methods: the objective's
# and its data selection's Knobs dataclasses), not here


class Students(TypedDict):
    model: ModelSpec
    budget_flops: float
    methods: list[str]
    seeds: list[int]
    teachers: dict[str, Source]


class Reference(TypedDict):
    model: ModelSpec
    budget_flops: float
    tokenizer: str
    split: str


class Evaluation(TypedDict):
    source: str
    tasks: list[str]
    limit: int | None
    metric: str
    batch_size: int
    bootstrap_iters: int
    bpb_max_bytes: int | None
    bpb_seq_len: int | None


class RunConfig(TypedDict):
    run: str
    seed: int
    corpus: dict
    tokenizers: dict
    shards: dict
    analysis: dict
    evaluation: Evaluation
    training: Training
    students: Students
    methods: dict[str, dict]
    references: dict[str, Reference]
    compute: dict
