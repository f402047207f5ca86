"""A checkpoint folder's weights, recorded when saved and verified when read.

The training loop writes `weights.sha256.json` ({file: sha256} of every *.safetensors) into each
checkpoint folder before it is renamed into place; every load of a local folder
(`models.from_pretrained`) checks it, so a damaged weight file stops the job that reads it
instead of flowing into a table. The record's own digest is the checkpoint's identity in the
resume key of every run that reads it (`stages.train.run_job`): no second pass over the weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lsap.files import sha256_file

RECORD = "weights.sha256.json"


class CheckpointError(RuntimeError):
    """A checkpoint's weights differ from what was saved."""


def save(model, folder, dtype=None) -> dict[str, str]:
    """`model.save_pretrained(folder)` and its record. `dtype`: the weights' type in the file
    (bf16 where training computes in bf16: half the bytes, the precision the model ran at;
    None keeps the parameters' own). Tied weights stay one tensor, so they stay tied in the file."""
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
    return record(folder)


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
