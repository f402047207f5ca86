"""FLOPs per token of a model known only by its size spec or its HF config: counted on the meta
device, so nothing is built or loaded. 6·N for training, 2·N for one forward (a teacher's
inference, an evaluation); `forward_flops_per_token` is the one place that conversion is made."""

from __future__ import annotations

from lsap.config_types import RunConfig


def model_flops_per_token(spec: dict, vocab_size: int, seq_len: int) -> int:
    """6·N of a model built from a size spec (lsap.models.build), counted on the meta device."""
    import torch

    from lsap import models

    with torch.device("meta"):
        return models.train_flops_per_token(models.build(spec, vocab_size, seq_len, seed=0))


def forward_flops_per_token(spec: dict, vocab_size: int, seq_len: int) -> int:
    """2·N of a model built from a size spec: one forward per token (a trained teacher's inference,
    an evaluation), a third of the training count 6·N. The one place this conversion is made."""
    return model_flops_per_token(spec, vocab_size, seq_len) // 3


def source_flops_per_token(cfg: RunConfig, source: dict) -> int:
    """2·N per token of a frozen teacher (a students.teachers source), from its HF config alone."""
    import torch
    from transformers import AutoModelForCausalLM

    from lsap import models

    with torch.device("meta"):
        return models.forward_flops_per_token(AutoModelForCausalLM.from_config(models.source_config(cfg, source)))


def standard_flops_per_token(model, seq: int, train: bool = True) -> int:
    """The standard (torchtitan get_nparams_and_flops, PaLM appendix B) FLOPs per token: 6·N +
    12·L·H·d_head·seq trained, 2·N + 4·L·H·d_head·seq for a forward alone, N the parameters
    outside the embedding table (a tied head is not counted: torchtitan subtracts the shared
    weight), attention without the causal discount."""
    from lsap import models

    cfg = model.config
    heads = cfg.num_attention_heads
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    n = models.n_params(model, embeddings=False)
    attn = cfg.num_hidden_layers * heads * d_head * seq
    return 6 * n + 12 * attn if train else 2 * n + 4 * attn
