"""The targets stage (`python -m lsap targets`): LSAP's surrogate candidates for every sequence one
seed's runs of a method read, written once and shared by every LSAP method of that targets spec."""

from __future__ import annotations

from pathlib import Path

from lsap import models
from lsap.data import shards, vocab
from lsap.models.surrogate import Surrogate, write_cache
from lsap.training import budget, plan


def cache_job(cfg: dict, method: str, seed: int, tokenizer_dir, shards_dir, translation, out, log=print) -> Path:
    """The targets stage: the candidates of every sequence one seed's runs of `method`'s plan
    read (every LSAP method with the same targets spec shares them)."""
    m = cfg["methods"][method]
    spec = models.resolve(cfg, cfg["students"]["teachers"]["surrogate"])
    sur = Surrogate.load(spec, translation, m["top_k"], m["probabilities"])
    n_vocab = len(vocab.load(tokenizer_dir))
    data = shards.open_shard(shards_dir, "train", tokenizer=vocab.fingerprint(tokenizer_dir), verify=False)
    p = budget.student(cfg, method, n_vocab, data.seq_len)
    which = plan.visited(p, cfg, len(data), seed)
    log(f"[targets] {len(which)} of {len(data)} sequences ({p.steps} steps, seed {seed})")
    meta = {"surrogate": spec, "shard_sha256": data.manifest.get("sha256"), "seed": seed,
            "flops": sur.flops_per_token * len(which) * data.seq_len}
    return write_cache(sur, data.sequences, out, cfg["training"]["micro_batch"], meta, which=which, log=log)
