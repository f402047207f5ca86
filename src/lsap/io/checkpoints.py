"""A checkpoint folder's weights, recorded when saved and verified when read.

The training loop writes `weights.sha256.json` ({file: sha256} of every *.safetensors) into each
checkpoint folder before it is renamed into place; every load of a local folder
(`models.from_pretrained`) checks it, so a damaged weight file stops the job that reads it
instead of flowing into a table. The record's own digest is the checkpoint's identity in the
resume key of every run that reads it (`stages.train.run_job`): no second pass over the weights.

A checkpoint is meant to be picked up by a lab: its weights get the umask's mode like every other
output (safetensors writes them 0600 through a temporary file), its config.json names the
tokenizer's bos/eos/pad ids (generation stops at EOS), and the final one carries a model card
(`write_card`): what trained it, on what, for how much compute, from which commit."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lsap.io.files import _umask, sha256_file, write_text

RECORD = "weights.sha256.json"


class CheckpointError(RuntimeError):
    """A checkpoint's weights differ from what was saved."""


def save(model, folder, dtype=None, tokenizer=None) -> dict[str, str]:
    """`model.save_pretrained(folder)` and its record. `dtype`: the weights' type in the file
    (bf16 where training computes in bf16: half the bytes, the precision the model ran at;
    None keeps the parameters' own). Tied weights stay one tensor, so they stay tied in the file.
    `tokenizer`: saved beside the weights, its special-token ids written into config.json."""
    import torch

    state = None
    if dtype is not None:
        cast: dict = {}
        state = {}
        for k, v in model.state_dict().items():
            shared = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
            if shared not in cast:
                cast[shared] = v.to(dtype) if torch.is_floating_point(v) else v
            state[k] = cast[shared]
    model.save_pretrained(folder, state_dict=state)
    umask_modes(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
        special_ids(folder, tokenizer)
    return record(folder)


def umask_modes(folder) -> None:
    """Every weight file of `folder` with the mode any file made here gets (0644 under umask 022):
    safetensors writes through a temporary file and keeps its 0600, which hides the weights from
    the rest of a lab group while the config and tokenizer beside them are readable."""
    mode = 0o666 & ~_umask()
    for p in Path(folder).glob("*.safetensors"):
        os.chmod(p, mode)


def special_ids(folder, tokenizer) -> dict:
    """bos/eos/pad ids from `tokenizer` into the folder's config.json (and generation_config.json
    where there is one): models are built with none (`models.build`), and a checkpoint without
    them generates past the end of a document and pads with nothing. Returns the ids written."""
    ids = {f"{k}_token_id": getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad")}
    ids = {k: v for k, v in ids.items() if v is not None}
    for name in ("config.json", "generation_config.json"):
        path = Path(folder) / name
        if path.exists():
            write_text(path, json.dumps({**json.loads(path.read_text()), **ids}, indent=2, sort_keys=True) + "\n")
    return ids


def record(folder) -> dict[str, str]:
    folder = Path(folder)
    sums = {p.name: sha256_file(p) for p in sorted(folder.glob("*.safetensors"))}
    (folder / RECORD).write_text(json.dumps(sums, indent=2) + "\n")
    return sums


def recorded(folder) -> dict[str, str] | None:
    path = Path(folder) / RECORD
    return json.loads(path.read_text()) if path.exists() else None


def verify(folder) -> None:
    """Every recorded weight file is present and unchanged. A folder without a record (a hub
    snapshot, a stand-in) is left to the loader."""
    folder, sums = Path(folder), recorded(folder)
    for name, want in (sums or {}).items():
        path = folder / name
        if not path.exists() or sha256_file(path) != want:
            what = "missing" if not path.exists() else f"not the file that was saved (its sha256 differs from {RECORD})"
            raise CheckpointError(
                f"{path} is {what}: delete the run folder that holds it ({folder.parent.parent}) and rerun "
                f"snakemake, which retrains that model and everything that read it")


def identity(folder) -> str:
    """The checkpoint's identity for resume keys: the digest of its record (or of its config and
    weight file sizes where it has none)."""
    sums = recorded(folder)
    if sums is None:
        sums = {p.name: str(p.stat().st_size) for p in sorted(Path(folder).glob("*")) if p.is_file()}
    return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()[:16]


CARD = "README.md"


def write_card(folder, run: str, summary: dict, method: str, seed: int, provenance: dict,
               heldout: dict[str, float] | None = None, domains=()) -> Path:
    """A short model card (README.md) in a final checkpoint: what a lab needs to decide whether to
    use it without opening the run's folder. `method`: what trained it, in words; `provenance`:
    {git_commit, config_hash, job_key}; `heldout`: figure -> value where the run has them (the
    validation loss is always known when training ends; bits per byte and benchmarks come later,
    from the evaluate stage, whose file the card names)."""
    folder = Path(folder)
    spent = summary.get("flops", 0.0)
    teacher = summary.get("teacher_flops", 0.0)
    budget = summary.get("matched_budget_flops", summary.get("budget_flops"))
    factor = summary.get("budget_factor", 1.0)
    figures = {"final validation loss (nats/token)": summary.get("final_val_loss"), **(heldout or {})}
    held = "; ".join(f"{k} {v:.4g}" for k, v in figures.items() if v is not None) or "none measured"
    sha = summary.get("data_sha256")
    name = method.split("`")[1] if "`" in method else method
    rows = [
        ("method", method),
        ("budget", (f"{budget:.3g} FLOPs, matched across methods" if factor == 1 else
                    f"{budget * factor:.3g} FLOPs, {factor:g} x the {budget:.3g} matched across methods")
                   + f"; spent {spent:.3g} (training {spent - teacher:.3g}, teacher inference {teacher:.3g})"),
        ("tokens", f"{summary.get('tokens', 0):,} in {summary.get('steps', 0):,} steps; "
                   f"{summary.get('params', 0):,} parameters"),
        ("data", f"run `{run}`" + (f", corpus domains {', '.join(domains)}" if domains else "")
         + f"; split `{summary.get('data_split')}`" + (f", shard sha256 `{sha[:16]}`" if sha else "")),
        ("held-out", held + f" (bits per byte and benchmarks: `results/{run}/eval/{name}-s{seed}.json` once "
                            "evaluated)"),
        ("provenance", f"commit `{provenance['git_commit']}`, config `{run}` hash `{provenance['config_hash']}`"
                       + (f", job key `{provenance['job_key']}`" if provenance.get("job_key") else "")),
    ]
    text = "\n".join([
        f"# {run}: {name}, seed {seed} (final checkpoint)", "",
        "A small causal LM from the LSAP replication (surrogate-assisted pretraining beside KD, SALT, MiniPLM), "
        "trained under one FLOPs budget: a research artefact for comparing methods, not a model to deploy.", "",
        "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(path)",
        "tokenizer = AutoTokenizer.from_pretrained(path)",
        "```", ""])
    write_text(folder / CARD, text)
    return folder / CARD
