"""The surrogate as a teacher during training (online: loaded into the training job), shared by the
objectives that read it (LSAP online, KD). Not a plugin: no NAME."""

from __future__ import annotations


def load(cfg, m, inputs, dev):
    from lsap import models
    from lsap.surrogate import Surrogate

    if inputs.get("translation") is None:
        raise ValueError(f"objective '{m['objective']}' needs the translation tables (--translation)")
    return Surrogate.load(models.resolve(cfg, cfg["students"]["teachers"]["surrogate"]), inputs["translation"],
                          m.get("top_k", 1), m.get("probabilities", "surrogate"), dev,
                          compile_=bool(cfg["training"].get("compile")))


def cached_candidates(cfg, m, inputs):
    """(candidates(inputs, targets, seq_ids) -> (ids, logp), FLOPs per token charged) from the
    targets stage's cache: it stands in for the surrogate's inference, which is still charged."""
    from lsap import plan
    from lsap.surrogate import CachedCandidates

    if inputs.get("targets") is None:
        raise ValueError(f"objective '{m['objective']}' with the targets cache needs it (--targets)")
    cache = CachedCandidates(inputs["targets"], m["top_k"], m["probabilities"], inputs["n_sequences"])
    return (lambda x, tgt, seq_ids: cache(seq_ids, x.device),
            plan.source_flops_per_token(cfg, cfg["students"]["teachers"]["surrogate"]))
