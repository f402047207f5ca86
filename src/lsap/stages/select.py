"""The scoring stage (`python -m lsap select`): one part of a data selection's scores (MiniPLM's
difference, SALT_DS's median top-k loss) over the training sequences, a pool sized by the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsap import methods, models
from lsap.data import shards, vocab
from lsap.io.files import sha256_file
from lsap.methods.scoring import score_part
from lsap.training import budget


def select_job(cfg: dict, method: str, tokenizer_dir, shards_dir, out, part: int, log=print) -> None:
    """The scoring stage: part `part` of compute.scoring_parts of the training sequences (a pool,
    or the whole shard) scored for the data selection of `method` (MiniPLM's difference, SALT_DS's
    median top-k loss). `gather_parts` then joins the parts into the selection's scores."""
    models.require_gpu(cfg, "select")  # a GPU job whose torch sees no GPU would score on the CPU for hours
    m, teachers = cfg["methods"][method], cfg["students"]["teachers"]
    roles = list(methods.DATA[m["data"]].roles)
    # SALT_DS scores with an early checkpoint of its teacher (SALT §4), on data it never read
    specs = [models.resolve(cfg, teachers[r], methods.scoring_fraction(m)) for r in roles]
    lms = [models.load_pretrained(s) for s in specs]
    # the models' identity: every part of one gather must have scored with the same checkpoints
    ident = [sha256_file(Path(s["id"]) / "model.safetensors") if Path(s.get("id", "")).is_dir() else s for s in specs]
    model, score_fn = methods.scorer(lms, m)
    n_vocab = len(vocab.load(tokenizer_dir))
    data = shards.open_shard(shards_dir, "train", tokenizer=vocab.fingerprint(tokenizer_dir), verify=False)
    which = None
    pool = budget.pool_size(cfg, method, len(data), budget.student(cfg, method, n_vocab, data.seq_len))
    if pool < len(data):  # score a uniform pool sized by what the run will draw
        which = np.sort(np.random.default_rng([cfg["seed"], 7]).choice(len(data), pool, replace=False))
        log(f"[select] pool of {pool} of {len(data)} sequences (pool_factor {m['pool_factor']})")
    score_part(model, data, score_fn, cfg["training"]["micro_batch"], which, part, cfg["compute"]["scoring_parts"],
               out, meta={"models": ident, "roles": roles}, log=log)
