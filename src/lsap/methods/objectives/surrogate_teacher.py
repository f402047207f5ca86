"""The surrogate as a teacher during training (online: loaded into the training job), shared by the
objectives that read it (LSAP online, KD). Not a plugin: no NAME."""

from __future__ import annotations


def load(cfg, m, inputs, dev):
    """The surrogate of the run's config, or the one the caller built (`inputs["surrogate"]`: the bench)."""
    from lsap import models
    from lsap.models.surrogate import Surrogate

    if inputs.get("surrogate") is not None:
        return inputs["surrogate"]
    if inputs.get("translation") is None:
        raise ValueError(f"objective '{m.objective_name}' needs the translation tables (--translation)")
    # KD reads the full distribution: top_k and probabilities are LSAP's (1 and the surrogate's own otherwise)
    return Surrogate.load(models.resolve(cfg, cfg["students"]["teachers"]["surrogate"]), inputs["translation"],
                          getattr(m.objective, "top_k", 1), getattr(m.objective, "probabilities", "surrogate"), dev,
                          compile_=bool(cfg["training"].get("compile")))


def cached_candidates(cfg, m, inputs):
    """(candidates(inputs, targets, seq_ids) -> (ids, logp), FLOPs per token charged) from the
    targets stage's cache: it stands in for the surrogate's inference, which is still charged."""
    from lsap.models import flops
    from lsap.models.surrogate import CachedCandidates

    if inputs.get("candidates") is not None:   # the caller's (the bench: a cache of its own rows)
        return inputs["candidates"]
    if inputs.get("targets") is None:
        raise ValueError(f"objective '{m.objective_name}' with the targets cache needs it (--targets)")
    cache = CachedCandidates(inputs["targets"], m.objective.top_k, m.objective.probabilities, inputs["n_sequences"])
    return (lambda x, tgt, seq_ids: cache(seq_ids, x.device),
            flops.source_flops_per_token(cfg, cfg["students"]["teachers"]["surrogate"]))


def tables(inputs) -> tuple:
    """The Σ∩ tables (student -> surrogate, surrogate -> student): the caller's, or the run's file."""
    from lsap.data import vocab

    return inputs["tables"] if inputs.get("tables") is not None else vocab.load_translation(inputs["translation"])
