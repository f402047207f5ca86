"""Text and tokens: the corpus and its decontamination, tokenizers and the shared vocabulary Σ∩,
token shards, the held-out slices and the probes' items, the sampler, selection scores,
the n-gram reference models of the training text."""
