"""Language models: load pretrained ones (GGUF from a registry asset, a hub id or a local HF
folder), count their parameters and FLOPs per token."""

from __future__ import annotations

import os

import torch

from lsap.io.assets import asset_path

# registry GGUF models: name -> (asset, path key). transformers de-quantises GGUF on load.
GGUF_MODELS = {"smollm2": ("smollm2", "gguf"), "gemma3": ("gemma3", "gguf")}
# positions each registry model was trained on (their GGUF `context_length`): a teacher reads the
# students' sequences, so shards.seq_len must fit
GGUF_CONTEXT = {"smollm2": 8192, "gemma3": 32768}


def gguf_file(name: str):
    """The verified GGUF file of registry model `name`."""
    return asset_path(*GGUF_MODELS[name])


def device() -> torch.device:
    """This process's device, with its index: under torchrun each rank has set its own
    (`train.Dist.from_env`), so a teacher loaded here sits on the rank's GPU, not on cuda:0."""
    enable_tf32()
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


class DeviceError(RuntimeError):
    """A job the config gives GPUs that would run on the CPU instead."""


def require_gpu(cfg: dict, stage: str, processes: int = 1) -> None:
    """Stop a job the config gives GPUs (compute.gpus > 0: Slurm places it with them) whose CUDA
    build of torch sees fewer devices than it runs processes: it would otherwise compute on the
    CPU inside a GPU allocation until its time limit (a build that cannot reach the node's
    driver, a job placed without GPUs). A CPU-only build is a deliberate CPU run: the local Slurm
    tests and `make rehearse` schedule fake GPUs and compute on the CPU. Every GPU stage calls
    this first: train (`processes` its ranks), select, table1, evaluate, surrogate_lines."""
    gpus = cfg["compute"]["gpus"]
    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 0 and torch.version.cuda is not None and seen < min(gpus, processes):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise DeviceError(
            f"{stage}: compute.gpus is {gpus} and this job runs {processes} process(es), but it sees {seen} CUDA "
            f"device(s) (torch {torch.__version__}, CUDA {torch.version.cuda}, CUDA_VISIBLE_DEVICES="
            f"{visible if visible is not None else 'unset'}): a job placed without GPUs, or a torch build that does "
            f"not match the node's driver. Fix the environment (nvidia-smi, torch.cuda.is_available()), or set "
            f"compute.gpus: 0 to run on the CPU")


def enable_tf32() -> None:
    """TF32 for the matmuls that stay fp32 under bf16 autocast (autocast's fp32 ops, fp32 inference
    on GPU): several times fp32's rate on H100 at a 10-bit mantissa. Without CUDA it changes nothing."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def inference_dtype(dev: torch.device) -> torch.dtype:
    return torch.bfloat16 if dev.type == "cuda" else torch.float32


def load_pretrained(spec: dict, dev: torch.device | None = None):
    """A frozen causal LM in eval mode. spec: {kind: pretrained, name} or {kind: hub, id}."""
    from transformers import AutoModelForCausalLM

    dev = dev or device()
    kw = {"dtype": inference_dtype(dev)}
    if spec["kind"] == "pretrained":
        from lsap.io import gguf_cache

        model = AutoModelForCausalLM.from_pretrained(str(gguf_cache.model_folder(gguf_file(spec["name"]))), **kw)
    elif spec["kind"] == "hub":
        model = from_pretrained(AutoModelForCausalLM, spec["id"], revision=spec.get("revision"), **kw)
    else:
        raise ValueError(f"cannot load a pretrained model of kind '{spec['kind']}'")
    return model.to(dev).eval().requires_grad_(False)


def from_pretrained(cls, name_or_dir: str, **kw):
    """`cls.from_pretrained`, but a damaged local checkpoint folder (truncated or overwritten
    weights, a broken config) stops with the folder's name and how to rebuild it."""
    from pathlib import Path

    if not Path(name_or_dir).is_dir():
        from lsap.io import snapshot

        with snapshot.reading(name_or_dir):
            return cls.from_pretrained(name_or_dir, **kw)
    from lsap.io import checkpoints

    checkpoints.verify(name_or_dir)  # the weights that were saved, or a message naming the rebuild
    try:
        return cls.from_pretrained(name_or_dir, **kw)
    except Exception as e:  # safetensors, JSON and shape errors alike
        raise RuntimeError(f"checkpoint {name_or_dir} is damaged ({type(e).__name__}: {e}). Delete the run folder "
                           f"that holds it (the folder above checkpoints/) and rerun snakemake: it retrains "
                           f"that model and everything that read it") from e


def trained_checkpoint(cfg: dict, name: str, fraction: float = 1.0):
    """A checkpoint (model + tokenizer) of a model this run's references stage trains: the final
    one, or the one at `fraction` of its training."""
    from lsap import REPO_ROOT
    from lsap.io import layout

    return REPO_ROOT / layout.checkpoint(layout.reference(cfg["run"], name), fraction)


def resolve(cfg: dict, spec: dict, fraction: float = 1.0) -> dict:
    """A model source spec made loadable: {kind: trained, name} -> {kind: hub, id: <its checkpoint>}."""
    if spec["kind"] == "trained":
        return {"kind": "hub", "id": str(trained_checkpoint(cfg, spec["name"], fraction))}
    return spec


FROM_TABLE: set[str] = set()  # hub ids whose config came from config/hub_models.yaml (lsap plan says so)


def hub_table() -> dict:
    import yaml

    from lsap import REPO_ROOT

    return yaml.safe_load((REPO_ROOT / "config" / "hub_models.yaml").read_text())


def source_config(cfg: dict, spec: dict):
    """The HF config of a model source (no weights read): what its FLOPs are counted from. A hub
    id out of reach falls back to config/hub_models.yaml (the architectures the hub states)."""
    from pathlib import Path

    from transformers import AutoConfig

    spec = resolve(cfg, spec)
    if spec["kind"] == "pretrained":
        from lsap.io import gguf_cache

        path = gguf_file(spec["name"])
        cached = gguf_cache.folder(path, "model")  # 5 s to parse from the GGUF: the copy if it is there
        return (AutoConfig.from_pretrained(str(cached)) if cached.is_dir()
                else AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name))
    from lsap.io.hub import reachable

    try:  # offline: no retries against an unreachable hub, whatever HF_HUB_OFFLINE said at import
        return AutoConfig.from_pretrained(spec["id"], revision=spec.get("revision"),
                                          local_files_only=not Path(spec["id"]).is_dir() and not reachable())
    except OSError:
        known = hub_table()
        if Path(spec["id"]).is_absolute() or spec["id"] not in known:
            raise
    FROM_TABLE.add(spec["id"])
    return AutoConfig.for_model(**{k: v for k, v in known[spec["id"]].items() if k != "tokenizer_vocab"})


def n_params(model, embeddings: bool = True) -> int:
    """Parameters, each tensor once (tied input/output embeddings count once)."""
    seen, total = set(), 0
    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    for p in model.parameters():
        if id(p) in seen or (not embeddings and id(p) in emb):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def forward_flops_per_token(model) -> int:
    """2·N per token for a forward pass (embeddings counted: the papers' convention)."""
    n = n_params(model)
    out = model.get_output_embeddings()
    if out is not None and out.weight is model.get_input_embeddings().weight:
        n += out.weight.numel()  # a tied LM head still does its matmul
    return 2 * n


# ---- models built from a size spec (students: OLMo2-shaped; surrogates/references: Qwen3) ----
def build(spec: dict, vocab_size: int, max_len: int, seed: int):
    """A freshly initialised causal LM. spec: {arch: olmo2|qwen3, hidden, layers, heads,
    kv_heads?, intermediate, tie_embeddings?, rope_theta?, norm_eps?, vocab_multiple?}. The
    vocabulary is padded to a multiple of `vocab_multiple` (64; OLMo-2-0425-1B: 128, so 100,278
    ids -> 100,352) so the LM head matmul stays aligned; rope_theta and norm_eps default to
    transformers' (10,000 and 1e-5; OLMo-2-0425-1B: 500,000 and 1e-6)."""
    from transformers import Olmo2Config, Olmo2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    multiple = spec.get("vocab_multiple", 64)
    exact = {k: spec[s] for k, s in (("rope_theta", "rope_theta"), ("rms_norm_eps", "norm_eps")) if s in spec}
    common = dict(
        **exact, vocab_size=-(-vocab_size // multiple) * multiple, hidden_size=spec["hidden"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"], num_key_value_heads=spec.get("kv_heads", spec["heads"]),
        intermediate_size=spec["intermediate"], max_position_embeddings=max_len,
        tie_word_embeddings=spec.get("tie_embeddings", False), use_cache=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,  # ids live in the tokenizer
    )
    torch.manual_seed(seed)
    if spec["arch"] == "olmo2":
        return Olmo2ForCausalLM(Olmo2Config(**common))
    if spec["arch"] == "qwen3":
        return Qwen3ForCausalLM(Qwen3Config(head_dim=spec["hidden"] // spec["heads"], **common))
    raise ValueError(f"unknown architecture '{spec['arch']}' (olmo2 or qwen3)")


def train_flops_per_token(model) -> int:
    """6·N per trained token (forward 2N + backward 4N), embeddings counted."""
    return 3 * forward_flops_per_token(model)


class Trunk(torch.nn.Module):
    """A causal LM without its head: forward returns the final hidden states (B, T, H).

    The objectives apply the head themselves, in chunks (lsap.models.fused_nll), so the full logits
    never exist. DDP and torch.compile wrap this module; the head's weight gets its gradient
    through the objective's autograd graph like any other parameter."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        if lm.config._attn_implementation == "sdpa":
            # Training sequences are never padded, so causal attention is the whole mask. Under a name
            # of its own, sdpa skips HF's mask preprocessing, whose packed-sequence check reads a
            # device value on every forward: a host sync per micro-batch on GPU (not when compiled)
            from transformers import AttentionInterface
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            AttentionInterface.register("sdpa_causal", sdpa_attention_forward)
            lm.config._attn_implementation = "sdpa_causal"

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm.model(input_ids=input_ids).last_hidden_state
