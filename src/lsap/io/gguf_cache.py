"""The registry GGUF models (SmolLM2, Gemma-3) as plain Hugging Face folders, written once.

transformers parses a GGUF and de-quantises it on every load: about 22 s for SmolLM2-135M's model
and 5 s for its tokenizer on this repo's 2-core CI machine, paid again by every LSAP and KD
student, Table 1, the overlap and translation jobs (on a GPU too: it is CPU work). The folder
holds exactly what that load produced (the de-quantised float32 weights as safetensors, the
config, the fast tokenizer's tokenizer.json) and loads in about a second.

It sits inside the asset's own folder, named by the GGUF's sha256 (as recorded and verified when
the asset was fetched), so it depends on nothing but those bytes: re-fetching the asset removes
it, and no config or run can be served a folder made from other weights. Concurrent jobs may both
build it; the first rename wins and the other's copy is dropped, so a reader never sees a partial
folder or one being replaced.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lsap.io.assets import verified_sha256
from lsap.io.checkpoints import umask_modes


def folder(gguf: Path, part: str) -> Path:
    """Where the HF copy of `part` ("model" or "tokenizer") of the GGUF file lives."""
    return gguf.parent / f".hf-{verified_sha256(gguf)[:16]}" / part


def _publish(build, dest: Path) -> Path:
    """Run build(tmp_dir) and move the result to dest unless another process got there first."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        build(tmp)
        for f in [tmp, *tmp.rglob("*")]:  # mkdtemp's 0700: other users of a shared cluster read it too
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
        try:
            os.rename(tmp, dest)  # atomic; fails if dest now exists (another job built it meanwhile)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def model_folder(gguf: Path) -> Path:
    """The de-quantised model as an HF folder (config.json + float32 safetensors)."""
    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        # transformers refuses to save a model loaded from GGUF (it is flagged quantised): copy its
        # de-quantised weights into a plain model of the same config
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, attr):
                delattr(config, attr)
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:  # a tied head is no missing weight
            raise RuntimeError(f"{gguf}: de-quantised weights do not fit {type(plain).__name__} "
                               f"(missing {missing}, unexpected {unexpected})")
        plain.tie_weights()
        plain.save_pretrained(tmp)
        umask_modes(tmp)  # safetensors writes 0600: readable like every other output

    return _publish(build, folder(gguf, "model"))


def tokenizer_folder(gguf: Path) -> Path:
    """The GGUF's tokenizer as an HF fast-tokenizer folder."""
    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                      clean_up_tokenization_spaces=False).save_pretrained(tmp)

    return _publish(build, folder(gguf, "tokenizer"))
